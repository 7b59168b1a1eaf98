//! GAMMA in the mesh route configuration: a Service's routes replace its virtual host's
//! default route (and a TrafficRoute), the consumer routes of a workload's namespace win
//! there, and other groups get the producer routes.

use super::*;
use crate::names;
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, route, route_action};
use portolan_model::gateway_api::{ApiRule, MeshPort, MeshRouting};

fn rule(route_ns: &str, route: &str, backend: &str) -> ApiRule {
    ApiRule {
        route: ObjectRef::new(Kind::HttpRoute, route_ns, route),
        index: 0,
        rule: HttpRule {
            name: Some("0".to_string()),
            ..mk_rule(
                Vec::new(),
                mk_forward(vec![mk_backend(backend, Some(80), None, 1)]),
            )
        },
    }
}

fn world() -> World {
    let mut world = mk_world(
        ["echo", "echo-v1", "echo-v2"]
            .into_iter()
            .map(|n| mk_service("mesh", n, vec![mk_port("http", 80)]))
            .collect(),
        Vec::new(),
    );
    // A TrafficRoute for echo too: the HTTPRoute wins.
    let tr = mk_route(
        "mesh",
        "traffic-route",
        &["echo"],
        vec![mk_rule(
            Vec::new(),
            mk_forward(vec![mk_backend("echo", None, None, 1)]),
        )],
    );
    world.routes.insert(tr.source.clone(), Arc::new(tr));
    let port = MeshPort {
        producer: vec![rule("mesh", "producer", "echo-v1.mesh")],
        consumers: [(
            "consumer".to_string(),
            vec![rule("consumer", "mine", "echo-v2.mesh")],
        )]
        .into(),
    };
    let mut mesh = MeshRouting::default();
    mesh.services
        .insert(ServiceKey::new("mesh", "echo"), [(80, port)].into());
    world.api_mesh = Arc::new(mesh);
    world
}

fn mesh_route(r: &Resources) -> &RouteConfiguration {
    r.routes
        .iter()
        .find(|r| r.name == names::MESH_ROUTE)
        .expect("mesh route configuration")
}

/// (Envoy route name, cluster) of echo's port 80.
fn echo_routes(r: &Resources) -> Vec<(String, String)> {
    let name = names::virtual_host_name(&ServiceKey::new("mesh", "echo"), 80);
    let vhost = mesh_route(r)
        .virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .expect("echo's virtual host");
    vhost
        .routes
        .iter()
        .map(|r| {
            let cluster = match &r.action {
                Some(route::Action::Route(a)) => match &a.cluster_specifier {
                    Some(route_action::ClusterSpecifier::Cluster(c)) => c.clone(),
                    other => format!("{other:?}"),
                },
                other => format!("{other:?}"),
            };
            (r.name.clone(), cluster)
        })
        .collect()
}

fn cluster_of(service: &str) -> String {
    names::cluster_name(
        &ServiceKey::new("mesh", service),
        80,
        &Options::default().cluster_domain,
    )
}

#[test]
fn producer_routes_apply_to_every_group_and_consumer_routes_to_their_namespace() {
    let world = world();
    let producer = vec![("mesh/producer/0".to_string(), cluster_of("echo-v1"))];
    assert_eq!(echo_routes(&run(&world)), producer);
    assert_eq!(
        echo_routes(&run_group(&world, "c;ns=mesh;sa=client")),
        producer
    );
    assert_eq!(
        echo_routes(&run_group(&world, "c;ns=consumer;sa=client")),
        [("consumer/mine/0".to_string(), cluster_of("echo-v2"))]
    );
    // Echo-v1 keeps its default route.
    let v1 = names::virtual_host_name(&ServiceKey::new("mesh", "echo-v1"), 80);
    let r = run(&world);
    let vhost = mesh_route(&r)
        .virtual_hosts
        .iter()
        .find(|v| v.name == v1)
        .expect("echo-v1");
    assert_eq!(vhost.routes.len(), 1);
    assert!(vhost.routes[0].name.is_empty(), "the default route");
}

#[test]
fn a_backend_that_did_not_resolve_answers_500() {
    let mut world = world();
    let port = MeshPort {
        producer: vec![rule("mesh", "producer", "gone.mesh")],
        consumers: Default::default(),
    };
    let mut mesh = MeshRouting::default();
    mesh.services
        .insert(ServiceKey::new("mesh", "echo"), [(80, port)].into());
    world.api_mesh = Arc::new(mesh);
    let r = run(&world);
    let name = names::virtual_host_name(&ServiceKey::new("mesh", "echo"), 80);
    let vhost = mesh_route(&r)
        .virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .expect("echo");
    let Some(route::Action::Route(a)) = &vhost.routes[0].action else {
        panic!("a route action");
    };
    assert_eq!(
        a.cluster_not_found_response_code,
        route_action::ClusterNotFoundResponseCode::InternalServerError as i32
    );
}
