// Shared by the interop scripts: configuration from the environment and the anvil chain.
import express from "express";
import { defineChain } from "viem";

/** A required environment variable. */
export function need(name) {
  const value = process.env[name];
  if (value === undefined || value === "") {
    console.error(`missing environment variable ${name}`);
    process.exit(1);
  }
  return value;
}

/** The local chain (anvil) as a viem chain: X402_CHAIN_ID, X402_RPC_URL. */
export function localChain() {
  const id = Number(need("X402_CHAIN_ID"));
  const rpc = need("X402_RPC_URL");
  return defineChain({
    id,
    name: `anvil-${id}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [rpc] } },
  });
}

/** The CAIP-2 network of the local chain. */
export function caip2() {
  return `eip155:${need("X402_CHAIN_ID")}`;
}

/** Listens on 127.0.0.1 (X402_PORT, 0 = any free port) and prints the ready line. */
export function listen(app, role) {
  const port = Number(process.env.X402_PORT ?? "0");
  const server = app.listen(port, "127.0.0.1", () => {
    // The driver waits for exactly this line on stdout.
    console.log(`ready ${role} ${server.address().port}`);
  });
  return server;
}

/**
 * Serves an official `x402Facilitator` over express on 127.0.0.1 (POST /verify, POST /settle,
 * GET /supported) and prints the ready line. `logBodies` also logs each request body.
 */
export function serveFacilitator(facilitator, { logBodies = false } = {}) {
  const app = express();
  app.use(express.json());

  function body(req) {
    const { paymentPayload, paymentRequirements } = req.body ?? {};
    if (!paymentPayload || !paymentRequirements) {
      throw new Error("paymentPayload and paymentRequirements are required");
    }
    return [paymentPayload, paymentRequirements];
  }
  const shown = (req) => (logBodies ? ` ${JSON.stringify(req.body)}` : "");

  app.post("/verify", async (req, res) => {
    try {
      const result = await facilitator.verify(...body(req));
      console.error(`verify${shown(req)} -> ${JSON.stringify(result)}`);
      res.json(result);
    } catch (error) {
      console.error("verify error", error);
      res.status(400).json({ isValid: false, invalidReason: "unexpected_verify_error", invalidMessage: String(error?.message ?? error) });
    }
  });

  app.post("/settle", async (req, res) => {
    try {
      const result = await facilitator.settle(...body(req));
      console.error(`settle${shown(req)} -> ${JSON.stringify(result)}`);
      res.json(result);
    } catch (error) {
      console.error("settle error", error);
      res.status(400).json({ success: false, errorReason: "unexpected_settle_error", errorMessage: String(error?.message ?? error), transaction: "", network: req.body?.paymentRequirements?.network ?? "" });
    }
  });

  app.get("/supported", (_req, res) => {
    res.json(facilitator.getSupported());
  });

  return listen(app, "facilitator");
}
