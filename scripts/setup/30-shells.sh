# Real shells and man for tests/it/completions.rs: the committed completion
# scripts are driven in bash (with bash-completion), zsh and fish, and every
# page in man/ is rendered by man-db and groff.
apt_need bash bash-completion zsh fish man-db groff-base
