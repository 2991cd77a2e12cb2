// A real OpenID Provider for Kreo's tests: npm `oidc-provider`, shaped like
// Keycloak (routes under /protocol/openid-connect/, realm_access and
// resource_access claims, kc_idp_hint accepted), on a loopback port.
//
// Environment: PORT, ISSUER (default http://127.0.0.1:PORT), CLIENT_ID,
// CLIENT_SECRET, REDIRECT_URIS and POST_LOGOUT_URIS (comma-separated), KID.
//
// Test-only routes, never part of a real provider:
//   PUT  /__debug/accounts/<sub>  JSON account (login, email, roles, amr...)
//   GET  /__debug/requests        the authorization and logout requests seen
//   POST /__debug/next-id-token   {"audience": "...", "clockOffset": -7200,
//                                 "authTimeOffset": -3600}: how the next ID
//                                 token goes wrong (once)
import crypto from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 0);
const issuer = process.env.ISSUER || `http://127.0.0.1:${port}`;
const clientId = process.env.CLIENT_ID || 'kreo';
const clientSecret = process.env.CLIENT_SECRET || 'kreo-test-secret';
const list = (value) => (value || '').split(',').filter(Boolean);

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: process.env.KID || 'kreo-signing-1',
  alg: 'RS256',
  use: 'sig',
};

const accounts = new Map();
const seen = { authorization: [], end_session: [] };
let nextIdToken = null;

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const config = {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: list(process.env.REDIRECT_URIS),
    post_logout_redirect_uris: list(process.env.POST_LOGOUT_URIS),
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  }],
  pkce: { required: () => true, methods: ['S256'] },
  // As Keycloak does for a confidential client: a refresh token with every
  // code exchange (no offline_access scope needed), rotated on each use.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub', 'acr', 'amr', 'realm_access', 'resource_access'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  acrValues: ['0', '1', '2'],
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = `<!doctype html><title>Sign out</title>${form}
<p>Sign out of the identity provider?</p>
<button id="confirm" form="op.logoutForm" name="logout" value="yes">Sign out</button>`;
      },
    },
  },
  routes: {
    authorization: '/protocol/openid-connect/auth',
    token: '/protocol/openid-connect/token',
    userinfo: '/protocol/openid-connect/userinfo',
    jwks: '/protocol/openid-connect/certs',
    end_session: '/protocol/openid-connect/logout',
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // Kreo is a first-party client: no consent screen, as in Keycloak with
  // "Consent required" off.
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
  findAccount: async (ctx, sub) => {
    const account = accounts.get(sub);
    if (!account) return undefined;
    return {
      accountId: sub,
      claims: async () => ({
        sub,
        email: account.email,
        email_verified: Boolean(account.email_verified),
        name: account.name || account.login,
        preferred_username: account.login,
        realm_access: { roles: account.realm_roles || [] },
        resource_access: { [clientId]: { roles: account.client_roles || [] } },
      }),
    };
  },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = `<!doctype html><title>Error</title><h1>${escape(out.error)}</h1>
<p>${escape(out.error_description || '')}</p>`;
  },
};

const provider = new Provider(issuer, config);
provider.proxy = true;

// Record what the relying party asked for (kc_idp_hint, PKCE, nonce...).
provider.use(async (ctx, next) => {
  if (ctx.path === '/protocol/openid-connect/auth') {
    seen.authorization.push({ ...ctx.query });
  } else if (ctx.path === '/protocol/openid-connect/logout' && ctx.method === 'GET') {
    seen.end_session.push({ ...ctx.query });
  }
  await next();
});

// A provider gone wrong, once: an ID token for another audience, or signed
// by a clock that is off.
const issue = provider.IdToken.prototype.issue;
provider.IdToken.prototype.issue = async function patchedIssue(options) {
  const fault = nextIdToken;
  if (!fault || options?.use !== 'idtoken') return issue.call(this, options);
  nextIdToken = null;
  const { client } = this;
  const realNow = Date.now;
  if (fault.audience) {
    this.client = new Proxy(client, {
      get(target, prop) {
        if (prop === 'clientId') return fault.audience;
        const value = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }
  if (fault.clockOffset) Date.now = () => realNow() + fault.clockOffset * 1000;
  // A sign-in older than it should be (an IdP that ignored prompt=login).
  const { available } = this;
  if (fault.authTimeOffset && available.auth_time) {
    this.available = { ...available, auth_time: available.auth_time + fault.authTimeOffset };
  }
  try {
    return await issue.call(this, options);
  } finally {
    Date.now = realNow;
    this.client = client;
    this.available = available;
  }
};

const readBody = (req) => new Promise((resolve, reject) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  req.on('error', reject);
});

const send = (res, status, body, type = 'text/html; charset=utf-8') => {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
};

const loginPage = (uid, error = '') => `<!doctype html><title>Sign in</title>
<h1>Sign in to the test realm</h1>${error ? `<p class="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>Login <input name="login" autofocus></label>
<button type="submit" id="signin">Sign in</button></form>`;

async function interaction(req, res, url) {
  const [, , uid, action] = url.pathname.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, 'interaction mismatch');
  if (req.method === 'GET') return send(res, 200, loginPage(uid));
  if (action !== 'login') return send(res, 404, 'not found');
  const form = new URLSearchParams(await readBody(req));
  const login = form.get('login') || '';
  const found = [...accounts.entries()].find(([, a]) => a.login === login);
  if (!found) return send(res, 200, loginPage(uid, 'Unknown login.'));
  const [sub, account] = found;
  return provider.interactionFinished(req, res, {
    login: { accountId: sub, amr: account.amr || ['pwd'], acr: account.acr || '1' },
  }, { mergeWithLastSubmission: false });
}

async function debug(req, res, url) {
  const parts = url.pathname.split('/');
  if (parts[2] === 'requests' && req.method === 'GET') {
    return send(res, 200, JSON.stringify(seen), 'application/json');
  }
  if (parts[2] === 'accounts' && req.method === 'PUT') {
    accounts.set(decodeURIComponent(parts[3]), JSON.parse(await readBody(req)));
    return send(res, 204, '');
  }
  if (parts[2] === 'next-id-token' && req.method === 'POST') {
    nextIdToken = JSON.parse(await readBody(req));
    return send(res, 204, '');
  }
  return send(res, 404, 'not found');
}

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  try {
    if (url.pathname.startsWith('/__debug/')) return await debug(req, res, url);
    if (url.pathname.startsWith('/interaction/')) return await interaction(req, res, url);
    return callback(req, res);
  } catch (error) {
    return send(res, 400, escape(error.message || String(error)));
  }
});
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
