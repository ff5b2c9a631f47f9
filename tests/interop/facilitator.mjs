// The official x402 facilitator: @x402/core's x402Facilitator with @x402/evm's exact scheme,
// served over express (POST /verify, POST /settle, GET /supported).
//
// Env: X402_RPC_URL, X402_CHAIN_ID, X402_FACILITATOR_KEY, X402_PORT (0 = free port).
import { createWalletClient, http, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { ExactEvmScheme } from "@x402/evm/exact/facilitator";
import { ExactEvmSchemeV1 } from "@x402/evm/exact/v1/facilitator";
import { caip2, localChain, need, serveFacilitator } from "./common.mjs";

const chain = localChain();
const account = privateKeyToAccount(need("X402_FACILITATOR_KEY"));
const client = createWalletClient({ account, chain, transport: http(need("X402_RPC_URL")) }).extend(
  publicActions,
);
const signer = toFacilitatorEvmSigner({ ...client, address: account.address });

const facilitator = new x402Facilitator().register(caip2(), new ExactEvmScheme(signer));
if (process.env.X402_V1_NETWORK) {
  facilitator.registerV1(process.env.X402_V1_NETWORK, new ExactEvmSchemeV1(signer));
}

serveFacilitator(facilitator);
