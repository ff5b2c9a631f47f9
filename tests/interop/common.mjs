// Shared by the interop scripts: configuration from the environment and the anvil chain.
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
