// Signs a payment with the official client (x402Client + @x402/evm exact scheme) without sending
// it: reads a PaymentRequired object (JSON) from X402_PAYMENT_REQUIRED and prints the
// PaymentPayload as one JSON line. The negative interop tests tamper with it and send it to both
// facilitators.
//
// Env: X402_PAYMENT_REQUIRED, X402_RPC_URL, X402_CHAIN_ID, X402_PAYER_KEY.
// Optional: X402_COUNT (sign this many payments, each with its own random nonce, one JSON line
// each; default 1) and X402_PAYMENT_ID (attach this `payment-identifier` id to every payment the
// way @x402/extensions documents it: `appendPaymentIdentifierToExtensions` in an
// `onBeforePaymentCreation` hook, which only adds the id when the PaymentRequired declares the
// extension).
import { privateKeyToAccount } from "viem/accounts";
import { createPublicClient, http } from "viem";
import { x402Client } from "@x402/core/client";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { toClientEvmSigner } from "@x402/evm";
import { appendPaymentIdentifierToExtensions } from "@x402/extensions/payment-identifier";
import { caip2, localChain, need } from "./common.mjs";

const account = privateKeyToAccount(need("X402_PAYER_KEY"));
const publicClient = createPublicClient({ chain: localChain(), transport: http(need("X402_RPC_URL")) });
const client = new x402Client()
  .register(caip2(), new ExactEvmScheme(toClientEvmSigner(account, publicClient)))
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
const count = Number(process.env.X402_COUNT ?? "1");
for (let i = 0; i < count; i++) {
  // A fresh copy each time: the hook edits the PaymentRequired's extensions in place.
  const payload = await client.createPaymentPayload(JSON.parse(need("X402_PAYMENT_REQUIRED")));
  console.log(JSON.stringify(payload));
}
