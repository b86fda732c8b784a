//! The generic FHIR read and search mounted ahead of the special FHIR routes, guarded so
//! that they take none of their paths (`docs/PERFORMANCE.md`, "Fifth step").

use super::fhir;

/// The two routes most requests take, `GET /fhir/{type}/{id}` and `GET /fhir/{type}`,
/// mounted ahead of every other FHIR route (undocumented: [`fhir::read`] and
/// [`fhir::search_type`] document them and stay mounted in their places).
///
/// actix tries a scope's routes in order and matches each pattern with a parameter by a
/// regular expression: behind a dozen special routes, routing alone was 5 % of a
/// consent-checked read (`docs/PERFORMANCE.md`). These two are guarded by
/// [`plainly_generic`] to take no path a special route takes; a path the guard leaves goes
/// on down the list as before and, when nothing special takes it, still reaches
/// [`fhir::read`] or [`fhir::search_type`], so the order changes what is tried first, never
/// what answers.
pub(super) fn mount<T>(scope: actix_web::Scope<T>) -> actix_web::Scope<T>
where
    T: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Error = actix_web::Error,
            InitError = (),
        >,
{
    let plain = || {
        actix_web::guard::fn_guard(|ctx: &actix_web::guard::GuardContext<'_>| {
            plainly_generic(ctx.head().uri.path())
        })
    };
    scope
        .service(
            actix_web::web::resource("/{type}/{id}")
                .guard(actix_web::guard::Get())
                .guard(plain())
                .to(fhir::read_handler),
        )
        .service(
            actix_web::web::resource("/{type}")
                .guard(actix_web::guard::Get())
                .guard(plain())
                .to(fhir::search_handler),
        )
}

/// Whether the path of a GET `/fhir/{type}` or `/fhir/{type}/{id}` is certainly for the
/// generic read or search: no route of its own could take it. Errs towards `false` (the
/// path then goes the ordinary way): any percent-escape, which actix decodes before
/// matching; any segment starting with `$` (operations, export status); and the types with
/// routes of their own at these shapes (`AuditEvent`, `Consent`, `metadata`).
fn plainly_generic(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/fhir/") else {
        return false;
    };
    if rest.contains('%') {
        return false;
    }
    let mut segments = rest.split('/');
    let first = segments.next().unwrap_or_default();
    !matches!(first, "AuditEvent" | "Consent" | "metadata")
        && !first.starts_with('$')
        && segments.all(|s| !s.starts_with('$'))
}

#[cfg(test)]
mod tests {
    use super::plainly_generic;

    /// Every documented GET route of the shapes `/fhir/{type}` and `/fhir/{type}/{id}`, other
    /// than the generic two, is left to go the ordinary way: the early routes take none of
    /// their paths, so a special route added later is covered without this test changing.
    #[test]
    fn no_special_route_is_taken_early() {
        let doc = super::super::openapi::document();
        let mut checked = 0;
        for (path, item) in &doc.paths.paths {
            let Some(rest) = path.strip_prefix("/fhir/") else {
                continue;
            };
            let shape_matches = (1..=2).contains(&rest.split('/').count());
            if item.get.is_none() || !shape_matches {
                continue;
            }
            if path == "/fhir/{type}" || path == "/fhir/{type}/{id}" {
                continue;
            }
            // Parameters filled as a client could: digits fit every pattern we use.
            let filled = path
                .split('/')
                .map(|s| if s.starts_with('{') { "1" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            assert!(!plainly_generic(&filled), "{path} would be taken early");
            checked += 1;
        }
        assert!(checked >= 5, "only {checked} special routes found");
    }

    #[test]
    fn the_generic_paths_are_taken_early_and_escapes_are_not() {
        for path in [
            "/fhir/Observation/obs-1",
            "/fhir/Patient/p1",
            "/fhir/Observation",
            "/fhir/AllergyIntolerance/a.b-c",
        ] {
            assert!(plainly_generic(path), "{path}");
        }
        for path in [
            "/fhir/Patient/%24export",
            "/fhir/%41uditEvent/1",
            "/fhir/Consent/c1",
            "/fhir/AuditEvent/12",
            "/fhir/metadata",
            "/fhir/$export-status/job",
            "/api/v1/Observation/obs-1",
        ] {
            assert!(!plainly_generic(path), "{path}");
        }
    }
}
