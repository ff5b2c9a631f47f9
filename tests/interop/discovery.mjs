// The official Bazaar discovery client (`withBazaar` from @x402/extensions, over @x402/core's
// HTTPFacilitatorClient) reading a facilitator's catalogue. Runs the queries below and prints
// one JSON line on stdout: {list, filtered, page2, search, miss, badLimit, problems[]}.
//
// The official client does no validation of its own (it returns `response.json()`), so this
// script checks each answer against the SDK's published types (`DiscoveryResourcesResponse`,
// `SearchDiscoveryResourcesResponse`, `DiscoveryResource` in @x402/extensions 2.27.0) and the
// SDK's own bazaar validator (`validateDiscoveryExtension`) on the echoed extension; every
// mismatch goes into `problems`.
//
// Env: X402_FACILITATOR_URL; X402_EXPECT_RESOURCE (a resource URL that must be listed);
// X402_NETWORK (its CAIP-2 network); X402_SEARCH (a word of its description).
import { HTTPFacilitatorClient } from "@x402/core/server";
import { withBazaar, validateDiscoveryExtension } from "@x402/extensions/bazaar";
import { need } from "./common.mjs";

const client = withBazaar(new HTTPFacilitatorClient({ url: need("X402_FACILITATOR_URL") }));
const expected = need("X402_EXPECT_RESOURCE");
const network = need("X402_NETWORK");
const word = need("X402_SEARCH");
const problems = [];

const isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v);

/** Checks one DiscoveryResource against the SDK's interface. */
function checkResource(where, r) {
  if (!isObject(r)) return problems.push(`${where}: not an object`);
  if (typeof r.resource !== "string") problems.push(`${where}.resource: not a string`);
  if (typeof r.type !== "string") problems.push(`${where}.type: not a string`);
  if (typeof r.x402Version !== "number") problems.push(`${where}.x402Version: not a number`);
  if (!Array.isArray(r.accepts)) problems.push(`${where}.accepts: not an array`);
  for (const [i, a] of (r.accepts ?? []).entries()) {
    for (const f of ["scheme", "network", "amount", "asset", "payTo"]) {
      if (typeof a?.[f] !== "string") problems.push(`${where}.accepts[${i}].${f}: not a string`);
    }
    if (typeof a?.maxTimeoutSeconds !== "number") {
      problems.push(`${where}.accepts[${i}].maxTimeoutSeconds: not a number`);
    }
  }
  // The SDK types lastUpdated as an ISO 8601 string.
  if (typeof r.lastUpdated !== "string") {
    problems.push(`${where}.lastUpdated: ${JSON.stringify(r.lastUpdated)} is not an ISO 8601 string`);
  } else {
    const t = new Date(r.lastUpdated);
    if (Number.isNaN(t.getTime())) problems.push(`${where}.lastUpdated: unparseable ${r.lastUpdated}`);
    else if (t.toISOString() !== r.lastUpdated) {
      problems.push(`${where}.lastUpdated: ${r.lastUpdated} is not in toISOString() form`);
    }
    if (Math.abs(Date.now() - t.getTime()) > 3_600_000) {
      problems.push(`${where}.lastUpdated: ${r.lastUpdated} is not within the last hour`);
    }
  }
  for (const f of ["description", "mimeType", "serviceName", "iconUrl"]) {
    if (r[f] !== undefined && typeof r[f] !== "string") problems.push(`${where}.${f}: not a string`);
  }
  if (r.tags !== undefined && !(Array.isArray(r.tags) && r.tags.every((t) => typeof t === "string"))) {
    problems.push(`${where}.tags: not a string array`);
  }
  if (r.extensions !== undefined && !isObject(r.extensions)) problems.push(`${where}.extensions: not an object`);
  const bazaar = r.extensions?.bazaar;
  if (bazaar !== undefined) {
    const v = validateDiscoveryExtension(bazaar);
    if (!v.valid) problems.push(`${where}.extensions.bazaar: the SDK's validator refuses it: ${v.errors?.join("; ")}`);
  }
}

function checkList(name, page) {
  if (page.x402Version !== 2) problems.push(`${name}.x402Version: ${page.x402Version}`);
  if (!Array.isArray(page.items)) return problems.push(`${name}.items: not an array`);
  page.items.forEach((r, i) => checkResource(`${name}.items[${i}]`, r));
  const p = page.pagination;
  if (!isObject(p) || !["limit", "offset", "total"].every((k) => Number.isInteger(p[k]))) {
    problems.push(`${name}.pagination: ${JSON.stringify(p)}`);
  }
}

function checkSearch(name, page) {
  if (page.x402Version !== 2) problems.push(`${name}.x402Version: ${page.x402Version}`);
  if (!Array.isArray(page.resources)) return problems.push(`${name}.resources: not an array`);
  page.resources.forEach((r, i) => checkResource(`${name}.resources[${i}]`, r));
  if (page.partialResults !== undefined && typeof page.partialResults !== "boolean") {
    problems.push(`${name}.partialResults: not a boolean`);
  }
  const p = page.pagination;
  if (p !== undefined && p !== null) {
    if (!isObject(p) || !Number.isInteger(p.limit) || !(p.cursor === null || typeof p.cursor === "string")) {
      problems.push(`${name}.pagination: ${JSON.stringify(p)} is not {limit, cursor}`);
    }
  }
}

const summary = (items) => items.map((r) => ({
  resource: r.resource, type: r.type, lastUpdated: r.lastUpdated,
  description: r.description, serviceName: r.serviceName, tags: r.tags,
  accepts: r.accepts, bazaar: r.extensions?.bazaar ?? null,
}));

const out = {};
try {
  const list = await client.extensions.bazaar.listResources();
  checkList("list", list);
  out.list = { total: list.pagination?.total, pagination: list.pagination, items: summary(list.items ?? []) };
  if (!(list.items ?? []).some((r) => r.resource === expected)) {
    problems.push(`list: ${expected} is not listed`);
  }

  const filtered = await client.extensions.bazaar.listResources({
    type: "http", network, scheme: "exact", extensions: "bazaar", limit: 1, offset: 0,
  });
  checkList("filtered", filtered);
  out.filtered = { pagination: filtered.pagination, items: summary(filtered.items ?? []) };

  const page2 = await client.extensions.bazaar.listResources({ limit: 1, offset: 1 });
  checkList("page2", page2);
  out.page2 = { pagination: page2.pagination, items: summary(page2.items ?? []) };

  const found = await client.extensions.bazaar.search({ query: word, type: "http", limit: 5 });
  checkSearch("search", found);
  out.search = { pagination: found.pagination ?? null, partialResults: found.partialResults, resources: summary(found.resources ?? []) };
  if (!(found.resources ?? []).some((r) => r.resource === expected)) {
    problems.push(`search: ${expected} not found by ${JSON.stringify(word)}`);
  }

  const miss = await client.extensions.bazaar.search({ query: "zzqxjvnothingmatchesthis" });
  checkSearch("miss", miss);
  out.miss = { count: (miss.resources ?? []).length };

  try {
    await client.extensions.bazaar.listResources({ limit: 0 });
    out.badLimit = { error: null };
  } catch (error) {
    out.badLimit = { error: String(error?.message ?? error) };
  }
} catch (error) {
  problems.push(`the official client failed: ${String(error?.message ?? error)}`);
}
out.problems = problems;
console.log(JSON.stringify(out));
process.exitCode = problems.length === 0 ? 0 : 1;
