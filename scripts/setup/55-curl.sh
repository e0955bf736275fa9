# curl for tests/it/dpop.rs: `tok dpop proof` output is sent with curl to a
# real `tok serve` proxy, as docs/reuse.md shows.
apt_need curl
