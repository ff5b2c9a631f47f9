// Drives tollgate's HTML paywall in headless Chromium with a test wallet, like a person would:
// open the page, check what it offers, click Pay, wait for the content.
//
//   node tests/browser/paywall.mjs <page-url> <private-key> <chain-id>
//   (or PAYWALL_URL, WALLET_KEY, CHAIN_ID; CHROMIUM overrides /usr/bin/chromium)
//
// The page gets a real EIP-1193 provider as `window.ethereum`: requests are routed to this
// process, where viem signs with the given key. Checks along the way: the page shows the
// expected network and recipient (EXPECT_NETWORK, EXPECT_PAY_TO, EXPECT_PRICE, when set) and
// fetches nothing from any other origin. Prints one JSON line with what the page showed and
// exits 0; exits 1 with a message on any failure.
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";
import { privateKeyToAccount } from "viem/accounts";

const [url, key, chainIdArg] = [
  process.argv[2] ?? process.env.PAYWALL_URL,
  process.argv[3] ?? process.env.WALLET_KEY,
  process.argv[4] ?? process.env.CHAIN_ID,
];
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const timeout = Number(process.env.PAYWALL_TIMEOUT_MS ?? 60000);

// A failed check: reported as one line, then the browser is closed and the exit code is 1.
class Failure extends Error {}

function fail(message) {
  throw new Failure(message);
}

function usage(message) {
  console.error(`paywall.mjs: ${message}`);
  process.exit(1);
}

if (!url || !key || !chainIdArg) usage("usage: paywall.mjs <page-url> <private-key> <chain-id>");
if (!existsSync(executablePath)) {
  usage(`no Chromium at ${executablePath}: apt-get install -y --no-install-recommends chromium`);
}
const account = privateKeyToAccount(key);
const chainId = Number(chainIdArg);
const origin = new URL(url).origin;

// Converts typed-data values the page sent as JSON strings into what viem expects for each
// Solidity type (integers as BigInt).
function typedValues(types, typeName, value) {
  const out = {};
  for (const field of types[typeName]) {
    const v = value[field.name];
    if (/^u?int[0-9]*$/.test(field.type)) out[field.name] = BigInt(v);
    else if (types[field.type]) out[field.name] = typedValues(types, field.type, v);
    else out[field.name] = v;
  }
  return out;
}

// The wallet's side of EIP-1193, in Node: what a browser extension would do after the user
// clicked "approve".
const walletCalls = [];
async function walletRequest(method, params) {
  walletCalls.push(method);
  switch (method) {
    case "eth_requestAccounts":
    case "eth_accounts":
      return [account.address];
    case "eth_chainId":
      return "0x" + chainId.toString(16);
    case "eth_signTypedData_v4": {
      const [from, json] = params;
      if (from.toLowerCase() !== account.address.toLowerCase()) {
        throw new Error(`asked to sign for ${from}, the wallet holds ${account.address}`);
      }
      const data = JSON.parse(json);
      const { EIP712Domain, ...types } = data.types;
      if (Number(data.domain.chainId) !== chainId) {
        throw new Error(`typed data for chain ${data.domain.chainId}, wallet on ${chainId}`);
      }
      const domain = { ...data.domain, chainId: BigInt(data.domain.chainId) };
      return account.signTypedData({
        domain,
        types,
        primaryType: data.primaryType,
        message: typedValues(types, data.primaryType, data.message),
      });
    }
    default: {
      const error = new Error(`unsupported method ${method}`);
      error.code = 4200;
      throw error;
    }
  }
}

let browser;
try {
  browser = await chromium.launch({
    executablePath,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    timeout,
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);

  const foreign = [];
  page.on("request", (request) => {
    const u = request.url();
    if (!u.startsWith("data:") && !u.startsWith("about:") && new URL(u).origin !== origin) {
      foreign.push(u);
    }
  });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));

  await page.exposeFunction("__tollgateWallet", async (method, params) => {
    try {
      return { result: await walletRequest(method, params) };
    } catch (e) {
      return { error: { code: e.code ?? -32603, message: String(e.message ?? e) } };
    }
  });
  await page.addInitScript(() => {
    // A minimal EIP-1193 provider; errors are thrown as { code, message } like real wallets.
    window.ethereum = {
      isTollgateTestWallet: true,
      async request({ method, params }) {
        const answer = await window.__tollgateWallet(method, params ?? []);
        if (answer.error) {
          const error = new Error(answer.error.message);
          error.code = answer.error.code;
          throw error;
        }
        return answer.result;
      },
      on() {},
      removeListener() {},
    };
  });

  const response = await page.goto(url, { waitUntil: "load" });
  if (response.status() !== 402) fail(`expected the page with status 402, got ${response.status()}`);
  const contentType = response.headers()["content-type"] ?? "";
  if (!contentType.startsWith("text/html")) fail(`expected text/html, got ${contentType}`);

  const offer = {
    description: (await page.textContent("#x402-description")).trim(),
    price: (await page.textContent(".x402-option .price")).trim(),
    network: (await page.textContent(".x402-option .network")).trim(),
    recipient: (await page.textContent(".x402-option .recipient")).trim(),
  };
  for (const [field, expected] of [
    ["network", process.env.EXPECT_NETWORK],
    ["recipient", process.env.EXPECT_PAY_TO],
    ["price", process.env.EXPECT_PRICE],
    ["description", process.env.EXPECT_DESCRIPTION],
  ]) {
    if (expected !== undefined && offer[field] !== expected) {
      fail(`page shows ${field} ${JSON.stringify(offer[field])}, expected ${JSON.stringify(expected)}`);
    }
  }

  await page.waitForSelector("#x402-pay:not([disabled])");
  await page.click("#x402-pay");
  // Unlocked, or an error on the status line (then there is no point waiting longer).
  await page
    .waitForSelector("#x402-paywall[data-paid], #x402-status.error", { timeout })
    .catch(() => {});
  if ((await page.getAttribute("#x402-paywall", "data-paid")) === null) {
    const status = await page.textContent("#x402-status");
    fail(`the page did not unlock; status: ${status}; wallet calls: ${walletCalls.join(",")}; ` +
      `page errors: ${pageErrors.join(" | ")}`);
  }
  // Text and JSON are shown as text; HTML is rendered in a sandboxed frame.
  let content;
  let rendered = "text";
  if (await page.$("#x402-content")) {
    content = await page.textContent("#x402-content");
  } else {
    const frame = await (await page.waitForSelector("#x402-output iframe")).contentFrame();
    content = (await frame.textContent("body")).trim();
    rendered = "html";
  }
  const status = (await page.textContent("#x402-status")).trim();
  const transaction = await page.getAttribute("#x402-paywall", "data-paid");
  if (pageErrors.length) fail(`page errors: ${pageErrors.join(" | ")}`);
  if (foreign.length) fail(`the page fetched from other origins: ${foreign.join(", ")}`);
  console.log(JSON.stringify({ offer, content, rendered, status, transaction, payer: account.address, walletCalls }));
  await browser.close();
  browser = undefined;
} catch (e) {
  console.error(`paywall.mjs: ${e instanceof Failure ? e.message : (e?.stack ?? String(e))}`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
}
