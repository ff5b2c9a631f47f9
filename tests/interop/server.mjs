// The official x402 resource server: express with @x402/express's payment middleware in front of
// `GET /paid`, pointed at a facilitator URL.
//
// Env: X402_CHAIN_ID, X402_FACILITATOR_URL, X402_PAY_TO, X402_ASSET, X402_TOKEN_NAME,
// X402_TOKEN_VERSION, X402_PRICE (atomic units), X402_BODY (the resource), X402_PORT.
import express from "express";
import { paymentMiddleware } from "@x402/express";
import { HTTPFacilitatorClient, x402ResourceServer } from "@x402/core/server";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import { caip2, listen, need } from "./common.mjs";

const network = caip2();
const facilitatorClient = new HTTPFacilitatorClient({ url: need("X402_FACILITATOR_URL") });
const resourceServer = new x402ResourceServer(facilitatorClient).register(network, new ExactEvmScheme());

const routes = {
  "GET /paid": {
    accepts: {
      scheme: "exact",
      network,
      payTo: need("X402_PAY_TO"),
      price: {
        amount: need("X402_PRICE"),
        asset: need("X402_ASSET"),
        extra: { name: need("X402_TOKEN_NAME"), version: need("X402_TOKEN_VERSION") },
      },
      maxTimeoutSeconds: 60,
    },
    description: "interop resource",
    mimeType: "text/plain",
  },
};

const app = express();
app.use(paymentMiddleware(routes, resourceServer));
app.get("/paid", (_req, res) => {
  res.type("text/plain").send(process.env.X402_BODY ?? "interop paid body");
});

listen(app, "server");
