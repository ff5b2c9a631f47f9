// The official x402 resource server: express with @x402/express's payment middleware in front of
// `GET /paid`, pointed at a facilitator URL.
//
// Env: X402_CHAIN_ID, X402_FACILITATOR_URL, X402_PAY_TO, X402_ASSET, X402_TOKEN_NAME,
// X402_TOKEN_VERSION, X402_PRICE (atomic units), X402_BODY (the resource), X402_PORT.
// Optional, for the replay rows: X402_HANDLER_DELAY_MS (the handler of `/paid` waits this long
// before answering, so copies of one payment overlap inside the paywall) and
// X402_PAYMENT_IDENTIFIER (`optional` or `required`: the route declares the official
// `payment-identifier` extension with @x402/extensions' own helper). `GET /handler-runs`
// (unpaid) answers `{"runs": n}`, how many times the paid handler ran.
import express from "express";
import { paymentMiddleware } from "@x402/express";
import { HTTPFacilitatorClient, x402ResourceServer } from "@x402/core/server";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import {
  PAYMENT_IDENTIFIER,
  declarePaymentIdentifierExtension,
  paymentIdentifierResourceServerExtension,
} from "@x402/extensions/payment-identifier";
import { caip2, listen, need } from "./common.mjs";

const network = caip2();
const facilitatorClient = new HTTPFacilitatorClient({ url: need("X402_FACILITATOR_URL") });
const resourceServer = new x402ResourceServer(facilitatorClient).register(network, new ExactEvmScheme());

const paymentIdentifier = process.env.X402_PAYMENT_IDENTIFIER ?? "";
if (!["", "optional", "required"].includes(paymentIdentifier)) {
  console.error(`X402_PAYMENT_IDENTIFIER must be "optional" or "required", not ${paymentIdentifier}`);
  process.exit(1);
}
if (paymentIdentifier) {
  resourceServer.registerExtension(paymentIdentifierResourceServerExtension);
}
const handlerDelayMs = Number(process.env.X402_HANDLER_DELAY_MS ?? "0");
let handlerRuns = 0;

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
    ...(paymentIdentifier && {
      extensions: {
        [PAYMENT_IDENTIFIER]: declarePaymentIdentifierExtension(paymentIdentifier === "required"),
      },
    }),
  },
};

const app = express();
app.use(paymentMiddleware(routes, resourceServer));
app.get("/handler-runs", (_req, res) => {
  res.json({ runs: handlerRuns });
});
app.get("/paid", async (_req, res) => {
  handlerRuns += 1;
  if (handlerDelayMs > 0) {
    await new Promise((resolve) => setTimeout(resolve, handlerDelayMs));
  }
  res.type("text/plain").send(process.env.X402_BODY ?? "interop paid body");
});

listen(app, "server");
