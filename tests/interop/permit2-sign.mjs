// Signs a Permit2 payment with the official client (x402Client + @x402/evm's `exact` and `upto`
// client schemes) without sending it: reads a PaymentRequired object (JSON) from
// X402_PAYMENT_REQUIRED, pays `accepts[0]` (an `exact` offer with
// `extra.assetTransferMethod: "permit2"`, or an `upto` offer with `extra.facilitatorAddress`) and
// prints the PaymentPayload as one JSON line. crates/cli/tests/interop_permit2.rs sends it to
// both facilitators with requirements of its choosing (an `upto` charge of zero, above the
// maximum, a payer without a Permit2 allowance).
//
// Env: X402_PAYMENT_REQUIRED, X402_RPC_URL, X402_CHAIN_ID, X402_PAYER_KEY.
import { privateKeyToAccount } from "viem/accounts";
import { createPublicClient, http } from "viem";
import { x402Client } from "@x402/core/client";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { UptoEvmScheme } from "@x402/evm/upto/client";
import { toClientEvmSigner } from "@x402/evm";
import { caip2, localChain, need } from "./common.mjs";

const account = privateKeyToAccount(need("X402_PAYER_KEY"));
const publicClient = createPublicClient({ chain: localChain(), transport: http(need("X402_RPC_URL")) });
const signer = toClientEvmSigner(account, publicClient);
const client = new x402Client()
  .register(caip2(), new ExactEvmScheme(signer))
  .register(caip2(), new UptoEvmScheme(signer))
  .setSpendControls({ allowedAssets: true });
const payload = await client.createPaymentPayload(JSON.parse(need("X402_PAYMENT_REQUIRED")));
console.log(JSON.stringify(payload));
