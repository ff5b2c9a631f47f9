//! Bazaar discovery end to end: a paywalled axum route described with the typed builder
//! advertises `extensions.bazaar` and its service metadata in its 402; a buyer echoes them in
//! its payment, pays over real HTTP through a facilitator served over HTTP, and the facilitator
//! then lists the route — with its schema — under `GET /discovery/resources` and finds it by a
//! word of its description. A priced route nobody paid is not listed.

use alloy::primitives::U256;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tollgate_evm::{ExactEvmClient, ExactEvmFacilitator, FacilitatorConfig};
use tollgate_facilitator::{http as facilitator_http, Facilitator, Ledger};
use tollgate_proto::discovery::{ResourceType, ResourcesResponse, SearchResponse};
use tollgate_proto::{header, PaymentRequired};
use tollgate_server::bazaar::{Bazaar, BodyType};
use tollgate_server::{PaymentOption, PaywallLayer, RemoteFacilitator, RoutePrice};
use tollgate_testkit::TestChain;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_paid_route_is_advertised_and_catalogued_with_its_schema() {
    let chain = TestChain::start().await.unwrap();
    let scheme = ExactEvmFacilitator::connect(
        &chain.endpoint(),
        TestChain::signer(0),
        FacilitatorConfig::default(),
    )
    .await
    .unwrap();
    let facilitator = Facilitator::new(vec![scheme], Ledger::in_memory().unwrap());
    let facilitator_url = serve(facilitator_http::router(
        facilitator,
        facilitator_http::HttpLimits::default(),
    ))
    .await;

    let option = PaymentOption::atomic(
        U256::from(10_000u64),
        &chain.usdc.to_string(),
        chain.caip2().parse().unwrap(),
        &TestChain::address(9).to_string(),
        json!({ "name": "USD Coin", "version": "2" })
            .as_object()
            .cloned(),
    );
    let paywall = PaywallLayer::new(RemoteFacilitator::new(&facilitator_url));
    let weather = RoutePrice::new(option.clone())
        .description("Current weather forecasts for any city")
        .mime_type("application/json")
        .discoverable(
            Bazaar::http_get()
                .required_query_param("city", "Paris")
                .output_example(json!({ "city": "Paris", "temperature": 21 })),
        )
        .unwrap()
        .service("Example Weather", &["weather", "forecast"], None)
        .unwrap();
    let search = RoutePrice::new(option)
        .description("Full-text search nobody pays for")
        .discoverable(Bazaar::http_post(BodyType::Json).body_example(json!({ "q": "rust" })))
        .unwrap();
    let shop = serve(
        Router::new()
            .route(
                "/weather",
                get(|| async { axum::Json(json!({ "city": "Paris", "temperature": 21 })) })
                    .route_layer(paywall.price(weather).unwrap()),
            )
            .route(
                "/search",
                axum::routing::post(|| async { "results" })
                    .route_layer(paywall.price(search).unwrap()),
            ),
    )
    .await;
    let http = reqwest::Client::new();

    // The 402 advertises the description and the service metadata.
    let unpaid = http
        .get(format!("{shop}/weather?city=Paris"))
        .send()
        .await
        .unwrap();
    assert_eq!(unpaid.status(), 402);
    let required: PaymentRequired =
        header::decode(unpaid.headers()[header::PAYMENT_REQUIRED].to_str().unwrap()).unwrap();
    let bazaar = required.extensions.as_ref().unwrap()["bazaar"].clone();
    assert_eq!(bazaar["info"]["input"]["method"], "GET");
    assert_eq!(bazaar["info"]["input"]["queryParams"]["city"], "Paris");
    assert_eq!(
        bazaar["schema"]["properties"]["input"]["properties"]["queryParams"]["required"],
        json!(["city"])
    );
    assert_eq!(
        required.resource.service_name.as_deref(),
        Some("Example Weather")
    );
    assert_eq!(
        required.resource.tags.as_deref(),
        Some(&["weather".to_owned(), "forecast".to_owned()][..])
    );
    // The unpaid POST route advertises its own description.
    let unpaid_search = http.post(format!("{shop}/search")).send().await.unwrap();
    assert_eq!(unpaid_search.status(), 402);
    let search_required: PaymentRequired = header::decode(
        unpaid_search.headers()[header::PAYMENT_REQUIRED]
            .to_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        search_required.extensions.unwrap()["bazaar"]["info"]["input"]["bodyType"],
        "json"
    );

    // The buyer pays, echoing the resource and the extensions as the spec says.
    let mut payment = ExactEvmClient::new(TestChain::signer(1))
        .sign(&required.accepts[0], Some(required.resource.clone()))
        .await
        .unwrap();
    payment.extensions = required.extensions.clone();
    let paid = http
        .get(format!("{shop}/weather?city=Paris"))
        .header(header::PAYMENT_SIGNATURE, header::encode(&payment))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    assert!(paid.headers().contains_key(header::PAYMENT_RESPONSE));

    // The facilitator lists it, with its schema; the never-paid route is absent.
    let page: ResourcesResponse = http
        .get(format!("{facilitator_url}/discovery/resources"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page.pagination.total, 1, "{:?}", page.items);
    let item = &page.items[0];
    assert_eq!(item.resource, format!("{shop}/weather"));
    assert_eq!(item.kind, ResourceType::Http);
    assert_eq!(item.service_name.as_deref(), Some("Example Weather"));
    assert_eq!(item.accepts[0].to_v2(), required.accepts[0]);
    let listed: &Value = &item.extensions.as_ref().unwrap()["bazaar"];
    assert_eq!(listed, &bazaar);

    // Found by a word of its description.
    let found: SearchResponse = http
        .get(format!(
            "{facilitator_url}/discovery/search?query=forecasts"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found.resources.len(), 1);
    assert_eq!(found.resources[0].resource, format!("{shop}/weather"));
    let nothing: SearchResponse = http
        .get(format!("{facilitator_url}/discovery/search?query=nobody"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        nothing.resources.is_empty(),
        "the unpaid route is not listed"
    );
}

/// The facilitator acts on a payment's echoed `bazaar` extension after settlement (it catalogues
/// the resource from it), so the gate accepts only the offer itself: an edited echo, or one
/// attached to a route that offered none, is refused before anything is verified or settled —
/// nothing moves and nothing is catalogued. An echo that leaves the extension out is paid and
/// simply not catalogued; the faithful echo — here rebuilt with its keys in another order, the
/// same JSON value — is paid and catalogued as the seller described it.
#[tokio::test]
async fn an_edited_or_invented_bazaar_echo_is_refused_and_never_catalogued() {
    let chain = TestChain::start().await.unwrap();
    let scheme = ExactEvmFacilitator::connect(
        &chain.endpoint(),
        TestChain::signer(0),
        FacilitatorConfig::default(),
    )
    .await
    .unwrap();
    let facilitator = Facilitator::new(vec![scheme], Ledger::in_memory().unwrap());
    let facilitator_url = serve(facilitator_http::router(
        facilitator,
        facilitator_http::HttpLimits::default(),
    ))
    .await;
    let option = PaymentOption::atomic(
        U256::from(10_000u64),
        &chain.usdc.to_string(),
        chain.caip2().parse().unwrap(),
        &TestChain::address(9).to_string(),
        json!({ "name": "USD Coin", "version": "2" })
            .as_object()
            .cloned(),
    );
    let paywall = PaywallLayer::new(RemoteFacilitator::new(&facilitator_url));
    let weather = RoutePrice::new(option.clone())
        .description("Current weather forecasts for any city")
        .discoverable(Bazaar::http_get().required_query_param("city", "Paris"))
        .unwrap();
    let plain = RoutePrice::new(option).description("Not described for discovery");
    let shop = serve(
        Router::new()
            .route(
                "/weather",
                get(|| async { "sunny" }).route_layer(paywall.price(weather).unwrap()),
            )
            .route(
                "/plain",
                get(|| async { "plain" }).route_layer(paywall.price(plain).unwrap()),
            ),
    )
    .await;
    let http = reqwest::Client::new();
    let challenge = |path: &'static str| {
        let http = http.clone();
        let shop = shop.clone();
        async move {
            let unpaid = http.get(format!("{shop}{path}")).send().await.unwrap();
            assert_eq!(unpaid.status(), 402);
            header::decode::<PaymentRequired>(
                unpaid.headers()[header::PAYMENT_REQUIRED].to_str().unwrap(),
            )
            .unwrap()
        }
    };
    let listed = || {
        let http = http.clone();
        let url = format!("{facilitator_url}/discovery/resources");
        async move {
            let page: ResourcesResponse = http.get(url).send().await.unwrap().json().await.unwrap();
            page
        }
    };
    let payer = ExactEvmClient::new(TestChain::signer(1));
    let before = chain.usdc_balance(TestChain::address(1)).await.unwrap();

    // 1. The description edited by the buyer (another city, another output).
    let required = challenge("/weather").await;
    let mut payment = payer
        .sign(&required.accepts[0], Some(required.resource.clone()))
        .await
        .unwrap();
    let mut edited = required.extensions.clone().unwrap();
    edited["bazaar"]["info"]["input"]["queryParams"]["city"] = json!("Atlantis");
    edited["bazaar"]["info"]["output"] = json!({ "type": "json", "example": { "free": true } });
    payment.extensions = Some(edited);
    let refused = http
        .get(format!("{shop}/weather?city=Paris"))
        .header(header::PAYMENT_SIGNATURE, header::encode(&payment))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 402);
    let answer: PaymentRequired = header::decode(
        refused.headers()[header::PAYMENT_REQUIRED]
            .to_str()
            .unwrap(),
    )
    .unwrap();
    assert!(
        answer
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("extension_echo_mismatch")),
        "{:?}",
        answer.error
    );

    // 2. A description attached to a route that offered none.
    let plain_required = challenge("/plain").await;
    let mut invented = payer
        .sign(
            &plain_required.accepts[0],
            Some(plain_required.resource.clone()),
        )
        .await
        .unwrap();
    invented.extensions = required.extensions.clone();
    let refused = http
        .get(format!("{shop}/plain"))
        .header(header::PAYMENT_SIGNATURE, header::encode(&invented))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 402);
    assert_eq!(
        chain.usdc_balance(TestChain::address(1)).await.unwrap(),
        before,
        "nothing moved for the refused echoes"
    );
    assert_eq!(listed().await.pagination.total, 0);

    // 3. No echo at all: paid, not catalogued.
    let mut silent = payer
        .sign(&required.accepts[0], Some(required.resource.clone()))
        .await
        .unwrap();
    silent.extensions = None;
    let paid = http
        .get(format!("{shop}/weather?city=Paris"))
        .header(header::PAYMENT_SIGNATURE, header::encode(&silent))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    assert_eq!(listed().await.pagination.total, 0);

    // 4. The faithful echo with its object keys in reverse order: the same value, paid and
    //    catalogued as offered.
    fn reversed(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .rev()
                    .map(|(k, v)| (k.clone(), reversed(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(reversed).collect()),
            other => other.clone(),
        }
    }
    let mut faithful = payer
        .sign(&required.accepts[0], Some(required.resource.clone()))
        .await
        .unwrap();
    let offered = required.extensions.clone().unwrap();
    faithful.extensions = Some(
        reversed(&Value::Object(offered.clone()))
            .as_object()
            .cloned()
            .unwrap(),
    );
    let paid = http
        .get(format!("{shop}/weather?city=Paris"))
        .header(header::PAYMENT_SIGNATURE, header::encode(&faithful))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    let page = listed().await;
    assert_eq!(page.pagination.total, 1);
    assert_eq!(
        page.items[0].extensions.as_ref().unwrap()["bazaar"],
        offered["bazaar"]
    );
    assert_eq!(
        chain.usdc_balance(TestChain::address(1)).await.unwrap(),
        before - U256::from(20_000u64),
        "exactly the two accepted payments moved"
    );
}
