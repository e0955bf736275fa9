# Real nginx and Caddy for tests/it/forward_auth.rs: each is started by the
# test on loopback, with a generated config, in front of a test upstream and
# asking `tok serve --auth-listen` about every request. Debian's packages do
# not start a service here (the tests run their own instances). The openssl
# CLI makes the throwaway CAs of the mTLS test.
apt_need nginx caddy openssl
