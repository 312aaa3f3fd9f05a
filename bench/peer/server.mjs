// A peer for bench/token.py: node-oidc-provider, an OpenID Certified provider, serving
// client_credentials with private_key_jwt and DPoP-bound JWT access tokens (RFC 9068), one
// process per worker like the broker under gunicorn, its state in Redis shared by them all.
//
//   PEER_PORT=8080 PEER_CLIENT_ID=bench-cms PEER_CLIENT_JWK='{"kty":"EC",...}' node server.mjs
import cluster from 'node:cluster';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

import RedisAdapter from './redis_adapter.mjs';

const port = Number(process.env.PEER_PORT);
const workers = Number(process.env.PEER_WORKERS || 2);
const issuer = `http://127.0.0.1:${port}`;
const resource = `${issuer}/exchange/v1`;

if (cluster.isPrimary) {
  // One signing key for every worker, as the broker's workers share theirs.
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'peer' };
  for (let i = 0; i < workers; i += 1) cluster.fork({ PEER_SIGNING_JWK: JSON.stringify(jwk) });
  cluster.on('exit', (worker, code) => {
    if (code !== 0) process.exit(code);
  });
} else {
  const provider = new Provider(issuer, {
    adapter: RedisAdapter,
    clients: [{
      client_id: process.env.PEER_CLIENT_ID,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      id_token_signed_response_alg: 'ES256',
      dpop_bound_access_tokens: true,
      scope: 'lookup',
      jwks: { keys: [JSON.parse(process.env.PEER_CLIENT_JWK)] },
    }],
    jwks: { keys: [JSON.parse(process.env.PEER_SIGNING_JWK)] },
    scopes: ['lookup'],
    ttl: { ClientCredentials: 300 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      dPoP: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'lookup',
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
  });
  provider.listen(port, '127.0.0.1');
}
