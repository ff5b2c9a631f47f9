// Signs a payment with the official client (x402Client + @x402/evm exact scheme) without sending
// it: reads a PaymentRequired object (JSON) from X402_PAYMENT_REQUIRED and prints the
// PaymentPayload as one JSON line. The negative interop tests tamper with it and send it to both
// facilitators.
//
// Env: X402_PAYMENT_REQUIRED, X402_RPC_URL, X402_CHAIN_ID, X402_PAYER_KEY.
import { privateKeyToAccount } from "viem/accounts";
import { createPublicClient, http } from "viem";
import { x402Client } from "@x402/core/client";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { toClientEvmSigner } from "@x402/evm";
import { caip2, localChain, need } from "./common.mjs";

const account = privateKeyToAccount(need("X402_PAYER_KEY"));
const publicClient = createPublicClient({ chain: localChain(), transport: http(need("X402_RPC_URL")) });
const client = new x402Client()
  .register(caip2(), new ExactEvmScheme(toClientEvmSigner(account, publicClient)))
  .setSpendControls({ allowedAssets: true });
const payload = await client.createPaymentPayload(JSON.parse(need("X402_PAYMENT_REQUIRED")));
console.log(JSON.stringify(payload));
