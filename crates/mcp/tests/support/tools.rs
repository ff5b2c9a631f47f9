//! The MCP server the tests sell tools from (also served by `examples/paid_tool_server.rs`):
//! one free tool and paid ones, one of which fails.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::{tool, tool_router, ErrorData};

/// The tool server; `served` counts the paid tool's runs.
#[derive(Clone, Default)]
pub struct Tools {
    pub served: Arc<AtomicUsize>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
pub struct City {
    pub city: String,
}

#[tool_router(server_handler)]
impl Tools {
    #[tool(description = "Echo a city's name (free)")]
    async fn echo(&self, Parameters(City { city }): Parameters<City>) -> String {
        city
    }

    #[tool(description = "Tomorrow's forecast for a city (paid)")]
    async fn forecast(&self, Parameters(City { city }): Parameters<City>) -> String {
        self.served.fetch_add(1, Ordering::SeqCst);
        format!("{city}: sunny")
    }

    #[tool(description = "A paid tool that answers an error result")]
    async fn broken(&self) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::error(vec![ContentBlock::text(
            "upstream weather service down",
        )]))
    }

    #[tool(description = "A paid tool that fails with a protocol error")]
    async fn crash(&self) -> Result<CallToolResult, ErrorData> {
        Err(ErrorData::internal_error("the tool crashed", None))
    }
}
