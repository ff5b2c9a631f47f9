// The official x402 client: fetch wrapped with @x402/fetch, paying with @x402/evm's exact scheme
// from a viem local account. Fetches X402_URL and prints one JSON line on stdout:
// {status, body, paymentResponse (decoded PAYMENT-RESPONSE / X-PAYMENT-RESPONSE),
// paymentPayload (what the client signed and sent, or null), error?}.
//
// Env: X402_URL, X402_RPC_URL, X402_CHAIN_ID, X402_PAYER_KEY.
// Optional: X402_PAYMENT_ID (attach this `payment-identifier` id the way @x402/extensions
// documents it: `appendPaymentIdentifierToExtensions` in an `onBeforePaymentCreation` hook; the
// helper adds it only when the server's 402 declares the extension).
import { privateKeyToAccount } from "viem/accounts";
import { wrapFetchWithPayment, x402Client, decodePaymentResponseHeader } from "@x402/fetch";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { toClientEvmSigner } from "@x402/evm";
import { appendPaymentIdentifierToExtensions } from "@x402/extensions/payment-identifier";
import { createPublicClient, http } from "viem";
import { caip2, localChain, need } from "./common.mjs";

const account = privateKeyToAccount(need("X402_PAYER_KEY"));
const publicClient = createPublicClient({ chain: localChain(), transport: http(need("X402_RPC_URL")) });
const signer = toClientEvmSigner(account, publicClient);

// Our test token is not one of the SDK's default assets: allow it explicitly (the default spend
// controls only accept known assets, capped at $1).
const client = new x402Client()
  .register(caip2(), new ExactEvmScheme(signer))
  .setSpendControls({ allowedAssets: true });
const paymentId = process.env.X402_PAYMENT_ID;
if (paymentId) {
  client.onBeforePaymentCreation(async ({ paymentRequired }) => {
    if (!paymentRequired.extensions) {
      paymentRequired.extensions = {};
    }
    appendPaymentIdentifierToExtensions(paymentRequired.extensions, paymentId);
  });
}
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
