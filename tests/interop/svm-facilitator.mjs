// The official x402 facilitator on Solana: @x402/core's x402Facilitator with @x402/svm's exact
// scheme, sponsoring fees with a @solana/kit keypair signer, served over express (POST /verify,
// POST /settle, GET /supported).
//
// Env: X402_SVM_RPC_URL, X402_SVM_NETWORK, X402_SVM_FEE_PAYER_KEY (JSON array of 64 bytes),
// X402_PORT (0 = free port).
import { createKeyPairSignerFromBytes } from "@solana/kit";
import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorSvmSigner } from "@x402/svm";
import { ExactSvmScheme } from "@x402/svm/exact/facilitator";
import { need, serveFacilitator } from "./common.mjs";

const keypair = await createKeyPairSignerFromBytes(Uint8Array.from(JSON.parse(need("X402_SVM_FEE_PAYER_KEY"))));
const signer = toFacilitatorSvmSigner(keypair, { defaultRpcUrl: need("X402_SVM_RPC_URL") });
const facilitator = new x402Facilitator().register(need("X402_SVM_NETWORK"), new ExactSvmScheme(signer));

serveFacilitator(facilitator);
