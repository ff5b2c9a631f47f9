// The official x402 facilitator on Solana: @x402/core's x402Facilitator with @x402/svm's exact
// scheme, sponsoring fees with a @solana/kit keypair signer, served over express (POST /verify,
// POST /settle, GET /supported).
//
// Env: X402_SVM_RPC_URL, X402_SVM_NETWORK, X402_SVM_FEE_PAYER_KEY (JSON array of 64 bytes),
// X402_PORT (0 = free port).
import express from "express";
import { createKeyPairSignerFromBytes } from "@solana/kit";
import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorSvmSigner } from "@x402/svm";
import { ExactSvmScheme } from "@x402/svm/exact/facilitator";
import { listen, need } from "./common.mjs";

const keypair = await createKeyPairSignerFromBytes(Uint8Array.from(JSON.parse(need("X402_SVM_FEE_PAYER_KEY"))));
const signer = toFacilitatorSvmSigner(keypair, { defaultRpcUrl: need("X402_SVM_RPC_URL") });
const facilitator = new x402Facilitator().register(need("X402_SVM_NETWORK"), new ExactSvmScheme(signer));

const app = express();
app.use(express.json());

function body(req) {
  const { paymentPayload, paymentRequirements } = req.body ?? {};
  if (!paymentPayload || !paymentRequirements) {
    throw new Error("paymentPayload and paymentRequirements are required");
  }
  return [paymentPayload, paymentRequirements];
}

app.post("/verify", async (req, res) => {
  try {
    const result = await facilitator.verify(...body(req));
    console.error(`verify -> ${JSON.stringify(result)}`);
    res.json(result);
  } catch (error) {
    console.error("verify error", error);
    res.status(400).json({ isValid: false, invalidReason: "unexpected_verify_error", invalidMessage: String(error?.message ?? error) });
  }
});

app.post("/settle", async (req, res) => {
  try {
    const result = await facilitator.settle(...body(req));
    console.error(`settle -> ${JSON.stringify(result)}`);
    res.json(result);
  } catch (error) {
    console.error("settle error", error);
    res.status(400).json({ success: false, errorReason: "unexpected_settle_error", errorMessage: String(error?.message ?? error), transaction: "", network: req.body?.paymentRequirements?.network ?? "" });
  }
});

app.get("/supported", (_req, res) => {
  res.json(facilitator.getSupported());
});

listen(app, "facilitator");
