// An ERP client of the hub in Node.js (@grpc/grpc-js + @grpc/proto-loader), no build step.
//
//   HUB_ADDRESS=127.0.0.1:50051 HUB_API_KEY=fbrhub_... node examples/node/erp_client.js
//
// It streams invoices in batches (one of them broken on purpose), decodes the rejection's
// field violations from the ack, follows StreamResults from a cursor kept in a file until
// every accepted invoice has an outcome, and decodes a failed call's error details. The last
// line it prints is a JSON summary (the repository's tests read it).
//
// What it shows an integrator:
// - includeDirs must hold both proto/ and third_party/proto/ (google/rpc/status.proto);
// - keepCase: true keeps the .proto field names (erp_reference, value_sales_excluding_st):
//   FBR's JSON keys (buyerNTNCNIC, valueSalesExcludingST) are neither these nor the
//   camelCase names proto-loader would make, and protobufjs drops unknown keys silently;
// - enums are sent by name (INVOICE_TYPE_SALE_INVOICE), never as FBR's text "Sale Invoice";
// - money and quantities are decimal strings.
"use strict";

const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

const ROOT = path.resolve(__dirname, "..", "..");
const INCLUDE_DIRS = [path.join(ROOT, "proto"), path.join(ROOT, "third_party", "proto")];
const ADDRESS = process.env.HUB_ADDRESS || "127.0.0.1:50051";
const API_KEY = process.env.HUB_API_KEY;
const PREFIX = process.env.INVOICE_PREFIX || `NODE-${Date.now()}`;
const CURSOR_FILE = process.env.CURSOR_FILE || path.join(ROOT, "var", "node-example.cursor");
const COUNT = 12;
const BATCH = 5;

const definition = protoLoader.loadSync("fbrhub/v1/invoice_service.proto", {
  includeDirs: INCLUDE_DIRS,
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const fbrhub = grpc.loadPackageDefinition(definition).fbrhub.v1;

// protobufjs types to decode google.protobuf.Any details (BadRequest, ErrorInfo, Status).
const rpc = new protobuf.Root();
rpc.resolvePath = (_origin, target) =>
  INCLUDE_DIRS.map((dir) => path.join(dir, target)).find(fs.existsSync) || target;
rpc.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"]);
const Status = rpc.lookupType("google.rpc.Status");
const ErrorInfo = rpc.lookupType("google.rpc.ErrorInfo");
const BadRequest = rpc.lookupType("google.rpc.BadRequest");
const TYPE_PREFIX = "type.googleapis.com/";

/**
 * The ErrorInfo reason and the field violations of a google.rpc.Status. Each detail is a
 * google.protobuf.Any: its type URL names the message, its value holds the bytes.
 */
function decodeDetails(status) {
  const found = { reason: "", violations: [] };
  for (const any of (status && status.details) || []) {
    const typeUrl = any.type_url || any.typeUrl; // proto-loader keepCase vs protobufjs
    if (typeUrl === TYPE_PREFIX + ErrorInfo.fullName.slice(1)) {
      found.reason = ErrorInfo.decode(any.value).reason;
    } else if (typeUrl === TYPE_PREFIX + BadRequest.fullName.slice(1)) {
      for (const v of BadRequest.decode(any.value).fieldViolations) {
        found.violations.push({ field: v.field, reason: v.reason, description: v.description });
      }
    }
  }
  return found;
}

/** The details of a failed call: its status travels in the grpc-status-details-bin trailer. */
function callErrorDetails(error) {
  const [bytes] = (error.metadata && error.metadata.get("grpc-status-details-bin")) || [];
  return bytes ? decodeDetails(Status.decode(bytes)) : null;
}

function pakistanToday() {
  return new Date(Date.now() + 5 * 3600 * 1000).toISOString().slice(0, 10);
}

function invoice(n) {
  return {
    erp_reference: `${PREFIX}-${String(n).padStart(3, "0")}`,
    invoice_type: "INVOICE_TYPE_SALE_INVOICE",
    invoice_date: pakistanToday(),
    scenario_id: "SN001",
    buyer_ntn_cnic: "2046004",
    buyer_business_name: "Buyer Ltd",
    buyer_province: "SINDH",
    buyer_address: "Karachi",
    buyer_registration_type: "BUYER_REGISTRATION_TYPE_REGISTERED",
    items: [
      {
        hs_code: n === 3 ? "85164000" : "8516.4000", // no dot: FBR error 0019
        product_description: "Electric steam iron",
        sale_type: "Goods at standard rate (default)",
        rate: "18%",
        uom: "Numbers, pieces, units",
        quantity: "2",
        value_sales_excluding_st: "9000.00",
        sales_tax_applicable: "1620.00",
        total_values: "10620.00",
      },
    ],
  };
}

function callMetadata() {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${API_KEY}`);
  return metadata;
}

/** Streams the invoices in batches; resolves with one ack per invoice, in order. */
function submit(client, invoices) {
  return new Promise((resolve, reject) => {
    const acks = [];
    const call = client.SubmitInvoices(callMetadata());
    call.on("data", (response) => acks.push(...response.acks));
    call.on("error", reject);
    call.on("end", () => resolve(acks));
    for (let i = 0; i < invoices.length; i += BATCH) {
      call.write({ invoices: invoices.slice(i, i + BATCH) });
    }
    call.end();
  });
}

/** Follows results from the saved cursor until every id in `waiting` has an outcome. */
function follow(client, waiting) {
  const outcomes = {};
  const cursor = fs.existsSync(CURSOR_FILE) ? fs.readFileSync(CURSOR_FILE, "ascii") : "";
  return new Promise((resolve, reject) => {
    const call = client.StreamResults({ cursor, follow: true }, callMetadata());
    call.on("data", (message) => {
      const event = message.event;
      if (event && waiting.has(event.invoice_id) && event.kind !== "RESULT_KIND_ALERT") {
        outcomes[event.invoice_id] = event.kind;
      }
      fs.writeFileSync(CURSOR_FILE, message.cursor, "ascii"); // handled: keep the place
      if (Object.keys(outcomes).length === waiting.size) {
        call.cancel();
        resolve(outcomes);
      }
    });
    call.on("error", (error) => {
      if (error.code !== grpc.status.CANCELLED) reject(error);
    });
  });
}

async function main() {
  if (!API_KEY) throw new Error("set HUB_API_KEY");
  fs.mkdirSync(path.dirname(CURSOR_FILE), { recursive: true });
  const client = new fbrhub.InvoiceService(ADDRESS, grpc.credentials.createInsecure());
  const invoices = Array.from({ length: COUNT }, (_, n) => invoice(n));
  const acks = await submit(client, invoices);
  const rejected = [];
  const waiting = new Set();
  for (const ack of acks) {
    if (ack.outcome === "ACK_OUTCOME_REJECTED") {
      const { reason, violations } = decodeDetails(ack.error);
      console.log(`${ack.erp_reference}: REJECTED ${reason}`, violations);
      rejected.push(...violations);
    } else {
      console.log(`${ack.erp_reference}: ${ack.outcome} ${ack.invoice_id}`);
      waiting.add(ack.invoice_id);
    }
  }
  const outcomes = await follow(client, waiting);
  const notFound = await new Promise((resolve) =>
    client.GetInvoice({ erp_reference: `${PREFIX}-missing` }, callMetadata(), (error) =>
      resolve({ code: error && error.code, details: error && callErrorDetails(error) }),
    ),
  );
  client.close();
  console.log(
    JSON.stringify({
      acks: acks.length,
      queued: waiting.size,
      rejected,
      outcomes: Object.values(outcomes),
      notFound: { code: notFound.code, reason: notFound.details && notFound.details.reason },
    }),
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
