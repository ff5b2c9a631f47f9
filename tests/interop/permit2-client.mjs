// The official x402 client for the Permit2 rows (crates/cli/tests/interop_permit2.rs): fetch
// wrapped with @x402/fetch, paying with @x402/evm's `exact` scheme (which signs Permit2 when the
// offer says `extra.assetTransferMethod: "permit2"`) and its `upto` scheme, from a viem local
// account. The payer must have approved Permit2 for the token beforehand (the test does it).
// Fetches X402_URL and prints one JSON line on stdout: {status, body, paymentResponse (decoded
// PAYMENT-RESPONSE), paymentPayload (what the client signed and sent, or null), error?}.
//
// Env: X402_URL, X402_RPC_URL, X402_CHAIN_ID, X402_PAYER_KEY.
import { privateKeyToAccount } from "viem/accounts";
import { wrapFetchWithPayment, x402Client, decodePaymentResponseHeader } from "@x402/fetch";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { UptoEvmScheme } from "@x402/evm/upto/client";
import { toClientEvmSigner } from "@x402/evm";
import { createPublicClient, http } from "viem";
import { caip2, localChain, need } from "./common.mjs";

const account = privateKeyToAccount(need("X402_PAYER_KEY"));
const publicClient = createPublicClient({ chain: localChain(), transport: http(need("X402_RPC_URL")) });
const signer = toClientEvmSigner(account, publicClient);

// The test tokens are not among the SDK's default assets: allow them explicitly.
const client = new x402Client()
  .register(caip2(), new ExactEvmScheme(signer))
  .register(caip2(), new UptoEvmScheme(signer))
  .setSpendControls({ allowedAssets: true });
let paymentPayload = null;
client.onAfterPaymentCreation(async (context) => {
  paymentPayload = context.paymentPayload;
});
const fetchWithPayment = wrapFetchWithPayment(fetch, client);

try {
  const response = await fetchWithPayment(need("X402_URL"), { method: "GET" });
  const body = await response.text();
  const header = response.headers.get("PAYMENT-RESPONSE") ?? response.headers.get("X-PAYMENT-RESPONSE");
  const paymentResponse = header ? decodePaymentResponseHeader(header) : null;
  console.log(JSON.stringify({ status: response.status, body, paymentResponse, paymentPayload }));
} catch (error) {
  console.log(JSON.stringify({ status: null, error: String(error?.message ?? error), paymentPayload }));
  process.exitCode = 1;
}
