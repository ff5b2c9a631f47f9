//! A scheme defined only in this file is served end to end — facilitator HTTP, paywall, paying
//! client — with no line of it in any Tollgate crate.
//!
//! The toy scheme `iou` moves IOUs between named accounts of an in-memory book (the toy's
//! "chain"): a payment is a keyed digest over (from, to, amount, nonce) made with the payer's
//! secret, and settlement books the transfer once per nonce. It implements the four plug-in
//! traits of `tollgate-core` — [`SchemeFacilitator`] and [`ChainOps`] for the facilitator,
//! [`SchemeServer`] for the paywall, [`PaymentSigner`] for the client — and is registered under
//! (`iou`, `toy:*`). Everything the facilitator owns (ledger, attempt keys, claims, one
//! settlement per payment) then works for it unchanged: the test pays once, replays the same
//! payment header and a re-encoding of it, and checks that exactly one transfer was booked.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tollgate::client::{paying_client, PaymentReceipt, SpendLedger, SpendingPolicy};
use tollgate::core::{
    AuthorizationHandle, BoxFuture, ChainOps, NetworkPattern, PaymentIdentity, PaymentSigner,
    SchemeError, SchemeFacilitator, SchemeServer, Settled, SignedPayment, SignerError,
    SignerStatus, Verified,
};
use tollgate::facilitator::Facilitator;
use tollgate::proto::token::Token;
use tollgate::proto::{
    ErrorReason, Network, PaymentPayload, PaymentRequirements, ResourceInfo, Scheme, SupportedKind,
    X402Version,
};
use tollgate::server::{PaymentOption, PaywallLayer, RemoteFacilitator, RoutePrice};

const ASSET: &str = "IOU";

fn iou() -> Scheme {
    "iou".parse().unwrap()
}

fn book_network() -> Network {
    "toy:book".parse().unwrap()
}

/// The toy chain: named accounts with balances and secrets, the nonces already used, and the
/// transfers booked (its "transactions").
#[derive(Default)]
struct Book {
    accounts: Mutex<HashMap<String, (u64, String)>>,
    used: Mutex<HashSet<(String, String)>>,
    transfers: Mutex<Vec<Transfer>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Transfer {
    from: String,
    to: String,
    amount: u64,
    nonce: String,
}

impl Book {
    fn open(&self, name: &str, balance: u64, secret: &str) {
        self.accounts
            .lock()
            .unwrap()
            .insert(name.into(), (balance, secret.into()));
    }

    fn balance(&self, name: &str) -> u64 {
        self.accounts.lock().unwrap().get(name).map_or(0, |a| a.0)
    }

    fn secret(&self, name: &str) -> Option<String> {
        self.accounts.lock().unwrap().get(name).map(|a| a.1.clone())
    }

    fn transfers(&self) -> Vec<Transfer> {
        self.transfers.lock().unwrap().clone()
    }

    /// Books `t` once: a used nonce or a short balance refuses it.
    fn book(&self, t: &Transfer) -> Result<String, SchemeError> {
        let mut used = self.used.lock().unwrap();
        if used.contains(&(t.from.clone(), t.nonce.clone())) {
            return Err(SchemeError::payment(
                ErrorReason::InvalidPayload,
                "nonce already used",
            ));
        }
        let mut accounts = self.accounts.lock().unwrap();
        let from = accounts.get(&t.from).map_or(0, |a| a.0);
        if from < t.amount {
            return Err(SchemeError::payment(
                ErrorReason::InsufficientFunds,
                "balance too low",
            ));
        }
        accounts.get_mut(&t.from).unwrap().0 -= t.amount;
        accounts.entry(t.to.clone()).or_default().0 += t.amount;
        used.insert((t.from.clone(), t.nonce.clone()));
        let mut transfers = self.transfers.lock().unwrap();
        transfers.push(t.clone());
        Ok(format!("toy-tx-{}", transfers.len()))
    }

    fn find(&self, from: &str, nonce: &str) -> Option<String> {
        self.transfers
            .lock()
            .unwrap()
            .iter()
            .position(|t| t.from == from && t.nonce == nonce)
            .map(|i| format!("toy-tx-{}", i + 1))
    }
}

/// The payer's keyed digest over the transfer (a toy signature).
fn digest(secret: &str, t: &Transfer) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (secret, &t.from, &t.to, t.amount, &t.nonce).hash(&mut h);
    format!("{:016x}", h.finish())
}

fn parse(payment: &PaymentPayload) -> Result<(Transfer, String), SchemeError> {
    let bad = |what: &str| SchemeError::payment(ErrorReason::InvalidPayload, what.to_owned());
    let field = |name: &str| {
        payment
            .payload
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| bad(name))
    };
    let transfer = Transfer {
        from: field("from")?,
        to: field("to")?,
        amount: field("amount")?.parse().map_err(|_| bad("amount"))?,
        nonce: field("nonce")?,
    };
    Ok((transfer, field("sig")?))
}

/// `iou` as the facilitator runs it.
struct IouFacilitator {
    book: Arc<Book>,
}

impl SchemeFacilitator for IouFacilitator {
    fn scheme(&self) -> Scheme {
        iou()
    }

    fn supported(&self) -> Vec<SupportedKind> {
        vec![SupportedKind {
            x402_version: X402Version::V2,
            scheme: iou(),
            network: book_network(),
            extra: Some(Map::from_iter([("book".to_owned(), json!("toy"))])),
        }]
    }

    fn signers(&self) -> Vec<(String, Vec<String>)> {
        Vec::new()
    }

    fn receipt_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn identify(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<PaymentIdentity, SchemeError> {
        let (t, _) = parse(payment)?;
        Ok(PaymentIdentity {
            asset: requirements.asset.clone(),
            payer: t.from,
            id: t.nonce,
            valid_before: None,
        })
    }

    fn verify<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<Verified, SchemeError>> {
        Box::pin(async move {
            let (t, sig) = parse(payment)?;
            let secret = self.book.secret(&t.from).ok_or_else(|| {
                SchemeError::payment(ErrorReason::InvalidPayload, "unknown payer")
            })?;
            if digest(&secret, &t) != sig {
                return Err(SchemeError::payment(
                    ErrorReason::InvalidPayload,
                    "bad signature",
                ));
            }
            if t.to != requirements.pay_to
                || u64::try_from(requirements.amount.get()).ok() != Some(t.amount)
            {
                return Err(SchemeError::payment(
                    ErrorReason::InvalidPaymentRequirements,
                    "terms differ",
                ));
            }
            if self.book.find(&t.from, &t.nonce).is_some() {
                return Err(SchemeError::payment(
                    ErrorReason::InvalidPayload,
                    "nonce already used",
                ));
            }
            if self.book.balance(&t.from) < t.amount {
                return Err(SchemeError::payment(
                    ErrorReason::InsufficientFunds,
                    "balance too low",
                ));
            }
            Ok(Verified {
                identity: self.identify(payment, requirements)?,
                proof: Box::new(t),
            })
        })
    }

    fn same_payment<'a>(
        &'a self,
        stored: &'a PaymentPayload,
        stored_pay_to: &'a str,
        presented: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<bool, SchemeError>> {
        Box::pin(async move {
            Ok(parse(stored)? == parse(presented)? && stored_pay_to == requirements.pay_to)
        })
    }

    fn submit<'a>(&'a self, verified: &'a Verified) -> BoxFuture<'a, Result<String, SchemeError>> {
        Box::pin(async move {
            let t = verified
                .proof
                .downcast_ref::<Transfer>()
                .expect("verified by this scheme");
            self.book.book(t)
        })
    }

    fn await_settlement<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        _requirements: &'a PaymentRequirements,
        transaction: &'a str,
    ) -> BoxFuture<'a, Result<Settled, SchemeError>> {
        Box::pin(async move {
            let (t, _) = parse(payment)?;
            match self.book.find(&t.from, &t.nonce) {
                Some(tx) if tx == transaction => Ok(Settled::new(tx, t.from)),
                _ => Err(SchemeError::unavailable(
                    ErrorReason::UnexpectedSettleError,
                    "transfer not booked",
                )),
            }
        })
    }

    fn find_settlement<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        _requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<Option<Settled>, SchemeError>> {
        Box::pin(async move {
            let (t, _) = parse(payment)?;
            Ok(self
                .book
                .find(&t.from, &t.nonce)
                .map(|tx| Settled::new(tx, t.from)))
        })
    }
}

/// The toy chain as `/health` sees it.
struct BookChain {
    book: Arc<Book>,
    network: Network,
}

impl ChainOps for BookChain {
    fn network(&self) -> &Network {
        &self.network
    }

    fn head(&self) -> BoxFuture<'_, Option<u64>> {
        Box::pin(async move { Some(self.book.transfers().len() as u64) })
    }

    fn signer_status(&self) -> BoxFuture<'_, Vec<SignerStatus>> {
        Box::pin(async { Vec::new() })
    }
}

/// `iou` as a seller prices with it: the payee must hold an account in the book.
struct IouServer {
    book: Arc<Book>,
}

impl SchemeServer for IouServer {
    fn scheme(&self) -> Scheme {
        iou()
    }

    fn parse_pay_to(&self, _network: &Network, pay_to: &str) -> Result<String, String> {
        match self.book.secret(pay_to) {
            Some(_) => Ok(pay_to.to_owned()),
            None => Err(format!("{pay_to:?} has no account in the book")),
        }
    }
}

/// `iou` as an agent pays with it.
struct IouWallet {
    name: String,
    secret: String,
    nonces: AtomicU64,
}

impl PaymentSigner for IouWallet {
    fn supports(&self, requirements: &PaymentRequirements) -> bool {
        requirements.scheme == iou() && requirements.network == book_network()
    }

    fn payer(&self, _requirements: &PaymentRequirements) -> String {
        self.name.clone()
    }

    fn sign<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        resource: Option<ResourceInfo>,
    ) -> BoxFuture<'a, Result<SignedPayment, SignerError>> {
        Box::pin(async move {
            let amount = u64::try_from(requirements.amount.get())
                .map_err(|_| SignerError("amount too large for an IOU".into()))?;
            let t = Transfer {
                from: self.name.clone(),
                to: requirements.pay_to.clone(),
                amount,
                nonce: format!("n{}", self.nonces.fetch_add(1, Ordering::Relaxed)),
            };
            let payload = json!({
                "from": t.from, "to": t.to, "amount": t.amount.to_string(), "nonce": t.nonce,
                "sig": digest(&self.secret, &t),
            });
            let payment = PaymentPayload {
                x402_version: Default::default(),
                resource,
                accepted: requirements.clone(),
                payload: payload.as_object().cloned().unwrap_or_default(),
                extensions: None,
            };
            Ok(SignedPayment {
                payload: payment,
                authorization: AuthorizationHandle {
                    scheme: iou().to_string(),
                    network: book_network(),
                    asset: ASSET.into(),
                    payer: t.from,
                    id: t.nonce,
                    valid_before: u64::MAX,
                },
            })
        })
    }
}

/// Serves `app` on a free loopback port; its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn a_scheme_defined_in_a_test_file_is_served_end_to_end() {
    let book = Arc::new(Book::default());
    book.open("alice", 1_000, "alice-secret");
    book.open("shop", 0, "shop-secret");
    let pattern: NetworkPattern = "toy:*".parse().unwrap();

    // Facilitator, over HTTP.
    let facilitator = Facilitator::builder()
        .scheme(
            pattern.clone(),
            Arc::new(IouFacilitator { book: book.clone() }),
        )
        .chain(Arc::new(BookChain {
            book: book.clone(),
            network: book_network(),
        }))
        .in_memory_ledger()
        .build()
        .await
        .unwrap();
    let facilitator_url = serve(tollgate::facilitator::http::router(
        facilitator,
        Default::default(),
    ))
    .await;
    let supported: Value = reqwest::get(format!("{facilitator_url}/supported"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(supported["kinds"][0]["scheme"], "iou", "{supported}");
    assert_eq!(supported["kinds"][0]["network"], "toy:book");

    // Paywall, settling through the remote facilitator.
    let option = PaymentOption::new(iou(), book_network(), ASSET, 25u64.into(), "shop");
    let paywall = PaywallLayer::new(RemoteFacilitator::new(&facilitator_url))
        .scheme(pattern.clone(), Arc::new(IouServer { book: book.clone() }))
        .route("GET /report", RoutePrice::new(option))
        .unwrap();
    let app = axum::Router::new()
        .route("/report", axum::routing::get(|| async { "the report" }))
        .layer(paywall);
    let shop = serve(app).await;

    // A seller typo is refused when the price is set, not at the first payment.
    let typo = PaymentOption::new(iou(), book_network(), ASSET, 25u64.into(), "sh0p");
    assert!(PaywallLayer::new(RemoteFacilitator::new(&facilitator_url))
        .scheme(pattern.clone(), Arc::new(IouServer { book: book.clone() }))
        .route("GET /report", RoutePrice::new(typo))
        .is_err());

    // The agent pays.
    let wallet = IouWallet {
        name: "alice".into(),
        secret: "alice-secret".into(),
        nonces: AtomicU64::new(0),
    };
    let policy = SpendingPolicy::new()
        .register_token(Token::new(book_network(), ASSET, ASSET, 2))
        .max_per_request("1 IOU")
        .unwrap()
        .budget("10 IOU", None)
        .unwrap();
    let agent = paying_client(wallet, policy, SpendLedger::in_memory().unwrap());
    let response = agent.get(format!("{shop}/report")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let receipt = response
        .extensions()
        .get::<PaymentReceipt>()
        .cloned()
        .unwrap();
    assert_eq!(receipt.settlement.transaction, "toy-tx-1");
    assert_eq!(response.text().await.unwrap(), "the report");
    assert_eq!((book.balance("alice"), book.balance("shop")), (975, 25));

    // One payment, one delivery: the same payment header again, and re-encoded, buys nothing.
    let paid = book.transfers()[0].clone();
    let wallet = IouWallet {
        name: "alice".into(),
        secret: "alice-secret".into(),
        nonces: AtomicU64::new(0),
    };
    let requirements =
        PaymentOption::new(iou(), book_network(), ASSET, 25u64.into(), "shop").requirements();
    let again = wallet.sign(&requirements, None).await.unwrap().payload;
    assert_eq!(parse(&again).unwrap().0.nonce, paid.nonce);
    let header = tollgate::proto::header::encode(&again);
    let mut reencoded = serde_json::to_value(&again).unwrap();
    reencoded["payload"]["extra"] = json!("ignored");
    let reencoded = tollgate::proto::header::encode(&reencoded);
    for value in [header, reencoded] {
        let replay = reqwest::Client::new()
            .get(format!("{shop}/report"))
            .header("PAYMENT-SIGNATURE", value)
            .send()
            .await
            .unwrap();
        assert_ne!(replay.status(), 200);
        assert_ne!(replay.text().await.unwrap(), "the report");
    }
    assert_eq!(book.transfers().len(), 1, "{:?}", book.transfers());
    assert_eq!((book.balance("alice"), book.balance("shop")), (975, 25));
}
