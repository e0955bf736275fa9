# tok completion for elvish: `tok completions elvish` wrote this; see `tok completions --help`.
# It asks `tok` (from PATH) at each TAB, so new commands and live token ids complete.
set edit:completion:arg-completer[tok] = { |@words|
    var index = (count $words)
    set index = (- $index 1)

    put (env _CLAP_IFS="\n" _CLAP_COMPLETE_INDEX=(to-string $index) TOK_COMPLETE="elvish" tok -- $@words) | to-lines
}
