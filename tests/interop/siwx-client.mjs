// The official sign-in-with-x client: pays for X402_URL once with @x402/fetch (@x402/evm's exact
// scheme), then fetches it again through @x402/extensions' `wrapFetchWithSIWx`, which answers
// the 402's `sign-in-with-x` challenge with a signed `SIGN-IN-WITH-X` header instead of paying.
// Prints one JSON line on stdout:
// {paid: {status, receipt}, signIn: {status, body, receipt, header}, error?}
// (`receipt`: whether a PAYMENT-RESPONSE came back; `header`: the SIGN-IN-WITH-X value sent).
//
// Env: X402_URL, X402_RPC_URL, X402_CHAIN_ID, X402_PAYER_KEY. Optional: X402_SKIP_PAYMENT=1
// (sign in without paying first).
import { privateKeyToAccount } from "viem/accounts";
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { toClientEvmSigner } from "@x402/evm";
import { wrapFetchWithSIWx } from "@x402/extensions/sign-in-with-x";
import { createPublicClient, http } from "viem";
import { caip2, localChain, need } from "./common.mjs";

const account = privateKeyToAccount(need("X402_PAYER_KEY"));
const publicClient = createPublicClient({ chain: localChain(), transport: http(need("X402_RPC_URL")) });
const client = new x402Client()
  .register(caip2(), new ExactEvmScheme(toClientEvmSigner(account, publicClient)))
  .setSpendControls({ allowedAssets: true });
const url = need("X402_URL");
const out = {};

// The header the SIWX wrapper sends, seen on its way out.
let sent = null;
const spying = async (input, init) => {
  const request = new Request(input, init);
  if (request.headers.has("SIGN-IN-WITH-X")) {
    sent = request.headers.get("SIGN-IN-WITH-X");
  }
  return fetch(request);
};

try {
  if (process.env.X402_SKIP_PAYMENT !== "1") {
    const paid = await wrapFetchWithPayment(fetch, client)(url, { method: "GET" });
    await paid.text();
    out.paid = { status: paid.status, receipt: paid.headers.has("PAYMENT-RESPONSE") };
  }
  const response = await wrapFetchWithSIWx(spying, account)(url, { method: "GET" });
  out.signIn = {
    status: response.status,
    body: await response.text(),
    receipt: response.headers.has("PAYMENT-RESPONSE"),
    header: sent,
  };
  console.log(JSON.stringify(out));
} catch (error) {
  out.error = String(error?.message ?? error);
  out.header = sent;
  console.log(JSON.stringify(out));
  process.exitCode = 1;
}
