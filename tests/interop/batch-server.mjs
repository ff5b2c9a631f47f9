// The official x402 resource server for the batch-settlement rows
// (crates/cli/tests/interop_batch_server.rs): express with @x402/express's payment middleware
// and @x402/evm's batch-settlement server scheme (its channel manager in memory), pointed at a
// facilitator URL, selling `GET /api` at X402_PRICE atomic units a request. The channels'
// receiver authorizer is the facilitator's (from its /supported). A refund request
// (`type: "refund"`) is answered by the scheme without running the handler.
//
// Env: X402_CHAIN_ID, X402_FACILITATOR_URL, X402_PAY_TO, X402_ASSET, X402_PRICE, X402_BODY,
// X402_PORT; X402_FACILITATOR_API_KEY (optional: sent as a bearer key to the facilitator).
import express from "express";
import { paymentMiddleware } from "@x402/express";
import { HTTPFacilitatorClient, x402ResourceServer } from "@x402/core/server";
import { BatchSettlementEvmScheme } from "@x402/evm/batch-settlement/server";
import { caip2, listen, need } from "./common.mjs";

const network = caip2();
const payTo = need("X402_PAY_TO");
const apiKey = process.env.X402_FACILITATOR_API_KEY;
const facilitatorClient = new HTTPFacilitatorClient({
  url: need("X402_FACILITATOR_URL"),
  ...(apiKey
    ? {
        createAuthHeaders: async () => {
          const headers = { Authorization: `Bearer ${apiKey}` };
          return { verify: headers, settle: headers, supported: headers };
        },
      }
    : {}),
});
const resourceServer = new x402ResourceServer(facilitatorClient).register(
  network,
  new BatchSettlementEvmScheme(payTo, { withdrawDelay: 900 }),
);

const routes = {
  "GET /api": {
    accepts: {
      scheme: "batch-settlement",
      network,
      payTo,
      price: {
        amount: need("X402_PRICE"),
        asset: need("X402_ASSET"),
        extra: { name: "USD Coin", version: "2" },
      },
      maxTimeoutSeconds: 3600,
    },
    description: "interop resource (batch-settlement)",
    mimeType: "text/plain",
  },
};

const app = express();
app.use(paymentMiddleware(routes, resourceServer));
const body = need("X402_BODY");
app.get("/api", (_req, res) => {
  res.type("text/plain").send(body);
});
listen(app, "server");
