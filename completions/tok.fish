# tok completion for fish: `tok completions fish` wrote this; see `tok completions --help`.
# It asks `tok` (from PATH) at each TAB, so new commands and live token ids complete.
complete --keep-order --exclusive --command tok --arguments "(TOK_COMPLETE=fish tok -- (commandline --current-process --tokenize --cut-at-cursor) (commandline --current-token))"
