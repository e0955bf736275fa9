# A real Prometheus and promtool (Debian's `prometheus` package) for
# tests/it/operating.rs: the test starts Prometheus itself on 127.0.0.1 with a
# generated config, lets it scrape a running `tok serve`, and lints the
# exposition with `promtool check metrics`. systemd brings `systemd-analyze`
# for checking contrib/tok-serve.service.
apt_need prometheus systemd
