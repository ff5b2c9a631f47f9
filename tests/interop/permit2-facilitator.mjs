// The official x402 facilitator for the Permit2 rows (crates/cli/tests/interop_permit2.rs):
// @x402/core's x402Facilitator with @x402/evm's `exact` scheme (EIP-3009 and, for
// `extra.assetTransferMethod: "permit2"`, Permit2 through x402ExactPermit2Proxy) and its `upto`
// scheme (Permit2 through x402UptoPermit2Proxy; `/supported` announces
// `extra.facilitatorAddress`), served over express (POST /verify, POST /settle, GET /supported).
//
// Env: X402_RPC_URL, X402_CHAIN_ID, X402_FACILITATOR_KEY, X402_PORT (0 = free port).
import { createWalletClient, http, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { ExactEvmScheme } from "@x402/evm/exact/facilitator";
import { UptoEvmScheme } from "@x402/evm/upto/facilitator";
import { caip2, localChain, need, serveFacilitator } from "./common.mjs";

const chain = localChain();
const account = privateKeyToAccount(need("X402_FACILITATOR_KEY"));
const client = createWalletClient({ account, chain, transport: http(need("X402_RPC_URL")) }).extend(
  publicActions,
);
const signer = toFacilitatorEvmSigner({ ...client, address: account.address });

const facilitator = new x402Facilitator()
  .register(caip2(), new ExactEvmScheme(signer))
  .register(caip2(), new UptoEvmScheme(signer));

serveFacilitator(facilitator, { logBodies: true });
