# tok completion for powershell: `tok completions powershell` wrote this; see `tok completions --help`.
# It asks `tok` (from PATH) at each TAB, so new commands and live token ids complete.
Register-ArgumentCompleter -Native -CommandName tok -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $prev = $env:TOK_COMPLETE;
    $env:TOK_COMPLETE = "powershell";

    $args = $commandAst.Extent.Text
    $args = $args.Substring(0, [math]::Min($cursorPosition, $args.Length));
    if ($wordToComplete -eq "") {
        $args += " ''";
    }

    $results = Invoke-Expression @"
& tok -- $args
"@;
    if ($null -eq $prev) {
        Remove-Item Env:\TOK_COMPLETE;
    } else {
        $env:TOK_COMPLETE = $prev;
    }
    $results | ForEach-Object {
        $split = $_.Split("`t");
        $cmd = $split[0];

        if ($split.Length -eq 2) {
            $help = $split[1];
        }
        else {
            $help = $split[0];
        }

        [System.Management.Automation.CompletionResult]::new($cmd, $cmd, 'ParameterValue', $help)
    }
};
