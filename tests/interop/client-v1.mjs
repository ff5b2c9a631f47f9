// The official x402 v1 client: fetch wrapped with x402-fetch, signing with a viem wallet client
// on the local chain (its chain id must be one v1 names, e.g. 84532 = base-sepolia). Prints one
// JSON line: {status, body, paymentResponse (decoded X-PAYMENT-RESPONSE), error?}.
//
// Env: X402_URL, X402_RPC_URL, X402_CHAIN_ID, X402_PAYER_KEY.
import { createWalletClient, http, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { decodeXPaymentResponse, wrapFetchWithPayment } from "x402-fetch";
import { localChain, need } from "./common.mjs";

const wallet = createWalletClient({
  account: privateKeyToAccount(need("X402_PAYER_KEY")),
  chain: localChain(),
  transport: http(need("X402_RPC_URL")),
}).extend(publicActions);
const fetchWithPayment = wrapFetchWithPayment(fetch, wallet);

try {
  const response = await fetchWithPayment(need("X402_URL"), { method: "GET" });
  const body = await response.text();
  const header = response.headers.get("X-PAYMENT-RESPONSE");
  const paymentResponse = header ? decodeXPaymentResponse(header) : null;
  console.log(JSON.stringify({ status: response.status, body, paymentResponse }));
} catch (error) {
  console.log(JSON.stringify({ status: null, error: String(error?.stack ?? error) }));
  process.exitCode = 1;
}
