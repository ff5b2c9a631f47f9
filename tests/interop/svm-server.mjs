// The official x402 resource server on Solana: express with @x402/express's payment middleware
// in front of `GET /paid`, priced in a mint with @x402/svm's exact scheme, pointed at a
// facilitator URL (whose /supported names the fee payer).
//
// Env: X402_SVM_NETWORK, X402_FACILITATOR_URL, X402_PAY_TO, X402_ASSET, X402_PRICE (atomic
// units), X402_BODY (the resource), X402_PORT.
import express from "express";
import { paymentMiddleware } from "@x402/express";
import { HTTPFacilitatorClient, x402ResourceServer } from "@x402/core/server";
import { ExactSvmScheme } from "@x402/svm/exact/server";
import { listen, need } from "./common.mjs";

const network = need("X402_SVM_NETWORK");
const facilitatorClient = new HTTPFacilitatorClient({ url: need("X402_FACILITATOR_URL") });
const resourceServer = new x402ResourceServer(facilitatorClient).register(network, new ExactSvmScheme());

const routes = {
  "GET /paid": {
    accepts: {
      scheme: "exact",
      network,
      payTo: need("X402_PAY_TO"),
      price: { amount: need("X402_PRICE"), asset: need("X402_ASSET") },
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
