// The official x402 v1 resource server: express with x402-express's payment middleware in front
// of `GET /paid`, pointed at a facilitator URL. v1 names networks (`base-sepolia`), so the local
// chain runs with that network's chain id.
//
// Env: X402_V1_NETWORK, X402_FACILITATOR_URL, X402_PAY_TO, X402_ASSET, X402_TOKEN_NAME,
// X402_TOKEN_VERSION, X402_PRICE (atomic units), X402_BODY, X402_PORT.
import express from "express";
import { paymentMiddleware } from "x402-express";
import { listen, need } from "./common.mjs";

const app = express();
app.use(
  paymentMiddleware(
    need("X402_PAY_TO"),
    {
      "GET /paid": {
        price: {
          amount: need("X402_PRICE"),
          asset: {
            address: need("X402_ASSET"),
            decimals: 6,
            eip712: { name: need("X402_TOKEN_NAME"), version: need("X402_TOKEN_VERSION") },
          },
        },
        network: need("X402_V1_NETWORK"),
        config: { description: "interop resource", mimeType: "text/plain", maxTimeoutSeconds: 60 },
      },
    },
    { url: need("X402_FACILITATOR_URL") },
  ),
);
app.get("/paid", (_req, res) => {
  res.type("text/plain").send(process.env.X402_BODY ?? "interop paid body");
});

listen(app, "server");
