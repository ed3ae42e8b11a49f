//! Cost per million tokens (`meridian_common::economics`): the provider's inputs in a form,
//! the cost at a utilisation, the break-even utilisation against a cloud API's price, the fleet
//! a token demand needs, and the utilisation-to-cost curve. A calculator: it stores nothing, so
//! the form is a GET. Beside it, the cost per million tokens of every live inference endpoint
//! at its measured utilisation, from the provider's stored cost inputs (the cost service).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use maud::{Markup, PreEscaped, html};
use meridian_common::economics::{self, Demand, GpuCosts, Provisioning, Throughput};
use meridian_common::validate::Problem;
use plotters::prelude::*;
use serde::Deserialize;

use crate::console::layout;
use crate::console::web::{Console, PageResult, User};
use crate::services::cost::EndpointCost;
use crate::services::{ApiError, Rpc};
use meridian_common::model::Workload;

/// The form's fields, as text (a bad one is named, not silently defaulted).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CostForm {
    capex: String,
    amortisation_years: String,
    redundancy: String,
    maintenance_per_year: String,
    power_kw: String,
    price_per_kwh: String,
    pue: String,
    tokens_per_second: String,
    utilisation: String,
    api_price: String,
    demand_tokens_per_second: String,
    budget_per_year: String,
    fleet_gpus: String,
}

impl Default for CostForm {
    /// docs/economics.md's worked example.
    fn default() -> Self {
        let s = |v: &str| v.to_owned();
        CostForm {
            capex: s("30000"),
            amortisation_years: s("4"),
            redundancy: s("0.1"),
            maintenance_per_year: s("1500"),
            power_kw: s("1.0"),
            price_per_kwh: s("0.10"),
            pue: s("1.4"),
            tokens_per_second: s("3000"),
            utilisation: s("0.7"),
            api_price: s("0.50"),
            demand_tokens_per_second: s("20000"),
            budget_per_year: s("100000"),
            fleet_gpus: s("16"),
        }
    }
}

/// Utilisation band of the sizing: below the floor over-provisioned, above the ceiling under.
const FLOOR: f64 = 0.5;
const CEILING: f64 = 0.85;

struct Inputs {
    costs: GpuCosts,
    throughput: Throughput,
    utilisation: f64,
    api_price: f64,
    demand: Demand,
}

fn number(problems: &mut Vec<Problem>, field: &str, text: &str) -> f64 {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => v,
        _ => {
            problems.push(Problem::new(field, "must be a number"));
            0.0
        }
    }
}

fn parse(f: &CostForm) -> Result<Inputs, Vec<Problem>> {
    let mut p = Vec::new();
    let costs = GpuCosts {
        capex: number(&mut p, "capex", &f.capex),
        amortisation_years: number(&mut p, "amortisation_years", &f.amortisation_years),
        redundancy: number(&mut p, "redundancy", &f.redundancy),
        maintenance_per_year: number(&mut p, "maintenance_per_year", &f.maintenance_per_year),
        power_kw: number(&mut p, "power_kw", &f.power_kw),
        price_per_kwh: number(&mut p, "price_per_kwh", &f.price_per_kwh),
        pue: number(&mut p, "pue", &f.pue),
    };
    let throughput = Throughput {
        tokens_per_second: number(&mut p, "tokens_per_second", &f.tokens_per_second),
    };
    let utilisation = number(&mut p, "utilisation", &f.utilisation);
    let api_price = number(&mut p, "api_price", &f.api_price);
    let demand_tps = number(
        &mut p,
        "demand_tokens_per_second",
        &f.demand_tokens_per_second,
    );
    let budget = number(&mut p, "budget_per_year", &f.budget_per_year);
    let fleet_gpus = match f.fleet_gpus.trim().parse::<u64>() {
        Ok(n) => n,
        Err(_) => {
            p.push(Problem::new("fleet_gpus", "must be a whole number of GPUs"));
            0
        }
    };
    if p.is_empty() {
        if let Err(e) = costs.check() {
            p.extend(e);
        }
        if let Err(e) = throughput.check() {
            p.push(e);
        }
        if let Err(e) = economics::check_utilisation("utilisation", utilisation) {
            p.push(e);
        }
        if api_price <= 0.0 {
            p.push(Problem::new("api_price", "must be above 0"));
        }
        if demand_tps < 0.0 {
            p.push(Problem::new(
                "demand_tokens_per_second",
                "must be 0 or more",
            ));
        }
        if budget < 0.0 {
            p.push(Problem::new("budget_per_year", "must be 0 or more"));
        }
    }
    if !p.is_empty() {
        return Err(p);
    }
    Ok(Inputs {
        costs,
        throughput,
        utilisation,
        api_price,
        demand: Demand {
            tokens_per_second: demand_tps,
            target_utilisation: utilisation,
            budget_per_year: budget,
            fleet_gpus,
            floor: FLOOR,
            ceiling: CEILING,
        },
    })
}

fn chart(inputs: &Inputs) -> String {
    let points = economics::curve(&inputs.costs, &inputs.throughput, 100);
    // Clip the near-zero end so the interesting part of the curve is readable.
    let shown: Vec<(f64, f64)> = points.into_iter().filter(|(u, _)| *u >= 0.05).collect();
    let top = shown.first().map_or(1.0, |p| p.1).max(inputs.api_price) * 1.05;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 320)).into_drawing_area();
        let _ = root.fill(&WHITE);
        if let Ok(mut chart) = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..1.0f64, 0.0..top)
        {
            let _ = chart
                .configure_mesh()
                .x_desc("utilisation")
                .y_desc("cost per million tokens")
                .draw();
            let blue = RGBColor(11, 79, 163);
            let red = RGBColor(179, 38, 30);
            let _ = chart.draw_series(std::iter::once(PathElement::new(
                shown,
                blue.stroke_width(2),
            )));
            let _ = chart.draw_series(std::iter::once(PathElement::new(
                vec![(0.0, inputs.api_price), (1.0, inputs.api_price)],
                red.stroke_width(1),
            )));
        }
        let _ = root.present();
    }
    svg
}

fn field(name: &str, label: &str, value: &str) -> Markup {
    let id = format!("c-{name}");
    html! { label for=(id) { (label) input id=(id) name=(name) type="text" inputmode="decimal" value=(value); } }
}

fn money(v: f64) -> String {
    format!("{v:.2}")
}

/// Hours back the endpoints' utilisation is measured over.
const ENDPOINT_WINDOW_HOURS: u32 = 24;

/// A cost per million tokens, or why there is none.
fn per_million(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "no tokens (idle)".to_owned()
    }
}

/// The inference endpoints with their measured cost per million tokens.
fn endpoint_table(rows: &[(Workload, Result<EndpointCost, ApiError>)], inputs_set: bool) -> Markup {
    html! {
        section aria-labelledby="endpoints" {
            h2 id="endpoints" { "Inference endpoints, measured" }
            p { "Cost per million tokens of each live inference endpoint at its utilisation over the last " (ENDPOINT_WINDOW_HOURS) " hours, from the provider's cost inputs: "
                strong { "busy" } " (NVML's, from its sites' agents) where measured, else "
                strong { "allocated" } " (the share of the window its GPUs were held), else the inputs' "
                strong { "assumed" } " utilisation. " code { "meridian cost endpoint WORKLOAD" } " gives the same per site." }
            @if !inputs_set {
                p #no-cost-inputs { "No cost inputs are set yet: a provider operator sets them with " code { "meridian cost inputs set FILE" } "." }
            }
            @if rows.is_empty() {
                p { "No live inference endpoints." }
            } @else {
                table #endpoint-costs {
                    thead { tr {
                        th scope="col" { "Endpoint" } th scope="col" { "Tenant" } th scope="col" { "GPUs" } th scope="col" { "Model size" }
                        th scope="col" { "Utilisation" } th.num scope="col" { "Cost per million tokens" } th.num scope="col" { "Break-even" }
                    } }
                    tbody { @for (w, cost) in rows { tr {
                        td { a href={ "/workloads/" (w.id) } { (w.spec.name) } " (" (w.id) ")" }
                        td { (w.tenant) }
                        @match cost {
                            Ok(c) => {
                                td { (format!("{:.2}", c.total.gpus)) " " (c.gpu_model.as_str()) }
                                td { (c.model_size) }
                                td { (format!("{:.1} %", c.total.utilisation * 100.0)) " " (c.total.basis.name()) }
                                td.num { (per_million(c.total.cost_per_million)) }
                                td.num { @match c.total.break_even {
                                    Some(b) if b <= 1.0 => (format!("{:.1} %", b * 100.0)),
                                    Some(_) => "API cheaper",
                                    None => "-",
                                } }
                            }
                            Err(e) => { td colspan="5" { (e.to_string()) } }
                        }
                    } } }
                }
            }
        }
    }
}

/// `GET /cost`.
pub async fn page(
    State(state): State<Console>,
    user: User,
    Query(form): Query<CostForm>,
) -> PageResult {
    state.services.admit(user.caller(), Rpc::ListSites).await?;
    let s = &state.services;
    let endpoints = s
        .endpoint_costs(
            s.admit(user.caller(), Rpc::GetEndpointCost).await?,
            ENDPOINT_WINDOW_HOURS,
        )
        .await?;
    let inputs_set = s
        .get_cost_inputs(s.admit(user.caller(), Rpc::GetCostInputs).await?)
        .await?
        .is_some();
    let parsed = parse(&form);
    let result = match &parsed {
        Ok(i) => {
            let yearly = i.costs.yearly();
            let cost = economics::cost_per_million_tokens(&i.costs, &i.throughput, i.utilisation);
            let break_even =
                economics::break_even_utilisation(&i.costs, &i.throughput, i.api_price);
            let sizing = economics::size(&i.costs, &i.throughput, &i.demand);
            html! {
                section aria-labelledby="result" {
                    h2 id="result" { "Result" }
                    table { tbody {
                        tr { th scope="row" { "Yearly cost per GPU" } td #yearly { (money(yearly.total())) " (amortisation " (money(yearly.amortisation)) ", maintenance " (money(yearly.maintenance)) ", power and cooling " (money(yearly.energy)) ")" } }
                        tr { th scope="row" { "Cost per million tokens at " (format!("{:.0} %", i.utilisation * 100.0)) } td #cost { (format!("{cost:.4}")) } }
                        tr { th scope="row" { "Break-even utilisation against the API price" } td #break-even {
                            @if break_even > 1.0 { "none: the API is cheaper even with the GPUs always busy" }
                            @else { (format!("{:.1} %", break_even * 100.0)) ": busier than this, owning the GPUs is cheaper" }
                        } }
                        tr { th scope="row" { "GPUs the demand needs at " (format!("{:.0} %", i.utilisation * 100.0)) } td #gpus-needed { (sizing.gpus_needed) " (" (money(sizing.cost_needed)) " a year)" } }
                        tr { th scope="row" { "GPUs the budget buys" } td #gpus-affordable { (sizing.gpus_affordable) } }
                        tr { th scope="row" { "The fleet of " (i.demand.fleet_gpus) " GPUs" } td #provisioning {
                            (match sizing.provisioning {
                                Provisioning::Over => "over-provisioned",
                                Provisioning::Under => "under-provisioned",
                                Provisioning::Right => "right-sized",
                            })
                            @if sizing.fleet_utilisation.is_finite() { " (" (format!("{:.0} %", sizing.fleet_utilisation * 100.0)) " busy; band " (format!("{:.0}-{:.0} %", FLOOR * 100.0, CEILING * 100.0)) ")" }
                        } }
                    } }
                    figure {
                        div role="img" aria-label="Cost per million tokens against utilisation, with the API price as a line" { (PreEscaped(chart(i))) }
                        figcaption { "Cost per million tokens (blue) against utilisation; the API price (red)." }
                    }
                }
            }
        }
        Err(problems) => html! {
            div.error role="alert" id="cost-error" {
                @for p in problems { p { (p.field) ": " (p.message) } }
            }
        },
    };
    let body = html! {
        p { "What a million tokens costs on your GPUs, and the model solved the other way. Inputs are per GPU, in your currency; see docs/economics.md for the model and a worked example." }
        form.filters method="get" action="/cost" {
            (field("capex", "GPU price (with its share of server and facility)", &form.capex))
            (field("amortisation_years", "Amortised over (years)", &form.amortisation_years))
            (field("redundancy", "Redundancy (spare fraction)", &form.redundancy))
            (field("maintenance_per_year", "Maintenance per year", &form.maintenance_per_year))
            (field("power_kw", "Power per GPU (kW)", &form.power_kw))
            (field("price_per_kwh", "Electricity per kWh", &form.price_per_kwh))
            (field("pue", "PUE", &form.pue))
            (field("tokens_per_second", "Tokens/s per GPU at full load", &form.tokens_per_second))
            (field("utilisation", "Utilisation (0-1)", &form.utilisation))
            (field("api_price", "Cloud API price per million tokens", &form.api_price))
            (field("demand_tokens_per_second", "Demand (tokens/s, yearly average)", &form.demand_tokens_per_second))
            (field("budget_per_year", "Budget per year", &form.budget_per_year))
            (field("fleet_gpus", "GPUs in the fleet", &form.fleet_gpus))
            button type="submit" id="compute" { "Compute" }
        }
        (result)
        (endpoint_table(&endpoints, inputs_set))
    };
    let status = if parsed.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok((
        status,
        layout::page("Cost per million tokens", &user, "/cost", body),
    )
        .into_response())
}
