// The official x402 client paying a batch-settlement route: fetch wrapped with @x402/fetch and
// @x402/evm's batch-settlement client scheme (it opens a channel with a deposit, then signs a
// cumulative voucher per request and follows the seller's receipts). Fetches X402_URL
// X402_CALLS times in a row and prints one JSON line per call on stdout:
// {status, body, paymentResponse (decoded PAYMENT-RESPONSE), payloadType}.
//
// Env: X402_URL, X402_RPC_URL, X402_CHAIN_ID, X402_PAYER_KEY, X402_CALLS.
import { privateKeyToAccount } from "viem/accounts";
import { wrapFetchWithPayment, x402Client, decodePaymentResponseHeader } from "@x402/fetch";
import { BatchSettlementEvmScheme } from "@x402/evm/batch-settlement/client";
import { toClientEvmSigner } from "@x402/evm";
import { createPublicClient, http } from "viem";
import { caip2, localChain, need } from "./common.mjs";

const account = privateKeyToAccount(need("X402_PAYER_KEY"));
const publicClient = createPublicClient({ chain: localChain(), transport: http(need("X402_RPC_URL")) });
const signer = toClientEvmSigner(account, publicClient);
const client = new x402Client()
  .register(caip2(), new BatchSettlementEvmScheme(signer, { depositPolicy: { depositMultiplier: 20 } }))
  .setSpendControls({ allowedAssets: true });
let payloadType = null;
client.onAfterPaymentCreation(async (context) => {
  payloadType = context.paymentPayload?.payload?.type ?? null;
});
const fetchWithPayment = wrapFetchWithPayment(fetch, client);
const calls = Number(need("X402_CALLS"));
for (let i = 0; i < calls; i++) {
  payloadType = null;
  try {
    const response = await fetchWithPayment(need("X402_URL"));
    const header = response.headers.get("PAYMENT-RESPONSE");
    console.log(
      JSON.stringify({
        status: response.status,
        body: await response.text(),
        paymentResponse: header ? decodePaymentResponseHeader(header) : null,
        payloadType,
      }),
    );
  } catch (error) {
    console.log(JSON.stringify({ status: 0, error: String(error?.message ?? error), payloadType }));
  }
}
