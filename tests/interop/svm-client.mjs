// The official x402 client on Solana: fetch wrapped with @x402/fetch, paying with @x402/svm's
// exact scheme from a @solana/kit keypair signer. Fetches X402_URL and prints one JSON line on
// stdout: {status, body, paymentResponse, paymentPayload, error?}.
//
// Env: X402_URL, X402_SVM_RPC_URL (the payer reads the mint and a blockhash there),
// X402_SVM_PAYER_KEY (JSON array of the 64 keypair bytes), X402_SVM_NETWORK (CAIP-2).
import { createKeyPairSignerFromBytes } from "@solana/kit";
import { wrapFetchWithPayment, x402Client, decodePaymentResponseHeader } from "@x402/fetch";
import { ExactSvmScheme } from "@x402/svm/exact/client";
import { toClientSvmSigner } from "@x402/svm";
import { need } from "./common.mjs";

const signer = await createKeyPairSignerFromBytes(Uint8Array.from(JSON.parse(need("X402_SVM_PAYER_KEY"))));
const client = new x402Client()
  .register(need("X402_SVM_NETWORK"), new ExactSvmScheme(toClientSvmSigner(signer), { rpcUrl: need("X402_SVM_RPC_URL") }))
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
