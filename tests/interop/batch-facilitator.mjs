// The official x402 facilitator for the batch-settlement rows
// (crates/cli/tests/interop_batch.rs): @x402/core's x402Facilitator with @x402/evm's
// batch-settlement facilitator scheme, run unchanged against Tollgate's x402BatchSettlement and
// deposit collectors at their canonical addresses; `/supported` announces its receiver
// authorizer. Served over express (POST /verify, POST /settle, GET /supported).
//
// Env: X402_RPC_URL, X402_CHAIN_ID, X402_FACILITATOR_KEY, X402_AUTHORIZER_KEY,
// X402_PORT (0 = free port).
import { createWalletClient, http, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { BatchSettlementEvmScheme } from "@x402/evm/batch-settlement/facilitator";
import { caip2, localChain, need, serveFacilitator } from "./common.mjs";

const chain = localChain();
const account = privateKeyToAccount(need("X402_FACILITATOR_KEY"));
const client = createWalletClient({ account, chain, transport: http(need("X402_RPC_URL")) }).extend(
  publicActions,
);
const signer = toFacilitatorEvmSigner({ ...client, address: account.address });
const authorizer = privateKeyToAccount(need("X402_AUTHORIZER_KEY"));

const facilitator = new x402Facilitator().register(
  caip2(),
  new BatchSettlementEvmScheme(signer, authorizer),
);

serveFacilitator(facilitator, { logBodies: true });
