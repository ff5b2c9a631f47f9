// Compiles contracts/src/*.sol with the pinned npm `solc` (no compiler download) and writes one
// deterministic artifact per contract to contracts/out/<Name>.json: {contractName, abi,
// bytecode, deployedBytecode}. Run: npm run build:contracts
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const solc = require("solc");

const here = dirname(fileURLToPath(import.meta.url));
const srcDir = join(here, "src");
const outDir = join(here, "out");
const CONTRACTS = ["TestUSDC", "TestWallet1271", "WalletFactory", "Eip6492Validator", "Multicall3"];

const sources = {};
for (const file of readdirSync(srcDir).filter((f) => f.endsWith(".sol")).sort()) {
  sources[file] = { content: readFileSync(join(srcDir, file), "utf8") };
}

const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    metadata: { bytecodeHash: "none", appendCBOR: false },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};

function findImports(path) {
  try {
    return { contents: readFileSync(join(srcDir, path.replace(/^\.\//, "")), "utf8") };
  } catch (e) {
    return { error: `import not found: ${path}` };
  }
}

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length > 0) {
  console.error(`solc ${solc.version()}: ${errors.length} error(s)`);
  process.exit(1);
}

mkdirSync(outDir, { recursive: true });
for (const name of CONTRACTS) {
  const file = `${name}.sol`;
  const compiled = output.contracts?.[file]?.[name];
  if (!compiled) {
    console.error(`no output for ${name} (expected in ${file})`);
    process.exit(1);
  }
  const artifact = {
    contractName: name,
    abi: compiled.abi,
    bytecode: "0x" + compiled.evm.bytecode.object,
    deployedBytecode: "0x" + compiled.evm.deployedBytecode.object,
  };
  writeFileSync(join(outDir, `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
  console.log(`${name}: ${compiled.evm.bytecode.object.length / 2} bytes`);
}
