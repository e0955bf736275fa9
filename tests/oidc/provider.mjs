// A real OAuth 2 authorization server for the oauth2 driver tests:
// oidc-provider 9.13 (npm) with the client_credentials grant, RFC 7662
// introspection and RFC 7009 revocation. Started by tests/it/oauth2.rs.
//
// Settings come from the environment (never argv, which `ps` shows):
//   OIDC_MODULES        the node_modules directory that holds oidc-provider
//   OIDC_PORT           the loopback port to listen on
//   OIDC_CLIENT_ID      the one confidential client (client_secret_basic)
//   OIDC_CLIENT_SECRET  its secret
//   OIDC_SCOPES         space-separated scopes the provider declares
//   OIDC_TOKEN_TTL      lifetime of client_credentials tokens, in seconds
// Prints `ready <issuer>` on stdout once it listens.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`provider.mjs: ${name} is not set`);
    process.exit(2);
  }
  return v;
};

// ESM ignores NODE_PATH, so the package is loaded from where setup put it.
const { default: Provider } = await import(
  pathToFileURL(join(env('OIDC_MODULES'), 'oidc-provider', 'lib', 'index.js')).href
);

const port = Number(env('OIDC_PORT'));
const issuer = `http://127.0.0.1:${port}`;
const scopes = env('OIDC_SCOPES').split(' ').filter(Boolean);
const ttl = Number(env('OIDC_TOKEN_TTL'));

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: env('OIDC_CLIENT_ID'),
      client_secret: env('OIDC_CLIENT_SECRET'),
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: scopes.join(' '),
    },
  ],
  scopes,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    // No resource indicator is ever sent, so access tokens stay opaque: the
    // provider's JWT-format tokens cannot be introspected or revoked.
  },
  ttl: { ClientCredentials: () => ttl },
});

// Keep the output of a test run readable; errors still reach stderr.
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
