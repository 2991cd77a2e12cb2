// Loads the vendored ALTCHA widget (static/vendor/altcha/) and registers its
// proof-of-work worker from our own origin: the "external" build bundles no
// worker, and a blob: worker would need the CSP loosened.
import "../vendor/altcha/altcha.min.js";

const pbkdf2 = new URL("../vendor/altcha/workers/pbkdf2.js", import.meta.url);
for (const algorithm of ["PBKDF2/SHA-256", "PBKDF2/SHA-384", "PBKDF2/SHA-512"]) {
  globalThis.$altcha.algorithms.set(algorithm, () => new Worker(pbkdf2));
}
