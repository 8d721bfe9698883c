// A real OpenID Connect provider (oidc-provider 9) for the integration tests.
// Usage: node provider.mjs CONFIG.json   (or OIDC_PEER_CONFIG=CONFIG.json node provider.mjs)
// CONFIG: {"port": 9000, "issuer": "http://127.0.0.1:9000",
//          "client": {"client_id", "client_secret", "redirect_uris": [...]},
//          "users": {"alice": {"password", "groups": [...], "email"}}}
// Listens on 127.0.0.1 only; prints "ready" when it does. Login is a plain HTML form at
// /interaction/:uid; consent is granted automatically once the user has logged in.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const cfg = JSON.parse(readFileSync(process.argv[2] || process.env.OIDC_PEER_CONFIG, 'utf8'));
const users = cfg.users || {};

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };

const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const provider = new Provider(cfg.issuer, {
  clients: [{
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    ...cfg.client,
  }],
  jwks: { keys: [jwk] },
  cookies: { keys: ['hardway-oidc-peer-7f3c9a1e5b2d', 'hardway-oidc-peer-0c4e8b6a2f91'] },
  // groups and preferred_username come with "profile" too: a hub may ask only for
  // "openid profile email"
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username', 'groups'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'profile', 'email', 'groups'],
  responseTypes: ['code'],
  features: { devInteractions: { enabled: false } },
  pkce: { required: () => Boolean(cfg.require_pkce) },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  clientBasedCORS: () => false,
  ttl: { AuthorizationCode: 60, AccessToken: 3600, IdToken: 3600, Grant: 3600, Interaction: 600, Session: 3600 },
  async findAccount(ctx, id) {
    const user = users[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          name: id,
          preferred_username: id,
          email: user.email,
          email_verified: Boolean(user.email),
          groups: user.groups || [],
        };
      },
    };
  },
  async renderError(ctx, out) {
    ctx.type = 'text/plain';
    ctx.body = `${out.error}: ${out.error_description || ''}\n`;
  },
});

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

function loginForm(res, uid, username, error) {
  send(res, 200, 'text/html; charset=utf-8', `<!doctype html>
<html><head><title>Sign in</title></head><body>
<h1>Sign in to the test provider</h1>
${error ? `<p class="error">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login">
<input name="username" value="${esc(username)}" autofocus>
<input name="password" type="password">
<button type="submit" id="login">Sign in</button>
</form></body></html>\n`);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return Object.fromEntries(new URLSearchParams(body));
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (req.method === 'GET' && !action && prompt.name === 'login') {
    return loginForm(res, uid, params.login_hint);
  }
  if (req.method === 'GET' && !action && prompt.name === 'consent') {
    // the user logged in: grant what the client asked for, as a consent screen would
    const grant = details.grantId ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scope] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scope.join(' '));
    }
    const grantId = await grant.save();
    const consent = details.grantId ? {} : { grantId };
    return provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
  }
  if (req.method === 'POST' && action === 'login' && prompt.name === 'login') {
    const { username = '', password = '' } = await readForm(req);
    const user = Object.hasOwn(users, username) ? users[username] : undefined;
    if (!user || user.password !== password) {
      return loginForm(res, uid, username, 'invalid username or password');
    }
    return provider.interactionFinished(req, res, { login: { accountId: username } },
      { mergeWithLastSubmission: false });
  }
  return send(res, 400, 'text/plain', `unexpected ${req.method} for prompt ${prompt.name}\n`);
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  const m = /^\/interaction\/([^/?]+)(?:\/([a-z]+))?(?:\?.*)?$/.exec(req.url);
  if (!m) return callback(req, res);
  return interaction(req, res, m[1], m[2]).catch((err) => {
    const status = err instanceof errors.OIDCProviderError ? err.status : 500;
    if (status === 500) console.error(err);
    if (!res.headersSent) send(res, status, 'text/plain', `${err.message}\n`);
    else res.end();
  });
});

server.listen(cfg.port, '127.0.0.1', () => console.log('ready'));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
