// Compiles contracts/src/*.sol with the pinned npm `solc` (solcjs: the compiler ships inside the
// package, so nothing is downloaded) and writes one deterministic artifact per contract to
// contracts/out/<Name>.json: {contractName, abi, bytecode, deployedBytecode}.
// Run: npm run build:contracts
//
// The artifacts are committed so that Rust builds need no compiler; CI reruns this and fails if
// they differ, so the output must depend on nothing but the sources and the compiler version.
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const solc = require("solc");

// Another compiler version would produce different bytecode than the committed artifacts.
const SOLC_VERSION = "0.8.37";
if (!solc.version().startsWith(SOLC_VERSION + "+")) {
  console.error(`expected solc ${SOLC_VERSION}, found ${solc.version()}; run npm ci`);
  process.exit(1);
}

const here = dirname(fileURLToPath(import.meta.url));
const srcDir = join(here, "src");
const outDir = join(here, "out");
// Only these get artifacts; any helper interfaces or libraries in src/ are compiled but not
// written out.
const CONTRACTS = [
  "TestUSDC",
  "TestWallet1271",
  "WalletFactory",
  "Eip6492Validator",
  "Multicall3",
  "TestUSDT",
  "TestPermitToken",
  "Permit2",
  "x402ExactPermit2Proxy",
  "x402UptoPermit2Proxy",
  "AuthorizationProbe",
  "x402BatchSettlement",
  "ERC3009DepositCollector",
  "Permit2DepositCollector",
];

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
    // No metadata hash in the bytecode: it would change with comments and file paths, making
    // artifacts differ between checkouts for no behavioural reason.
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
