// Starts Swagger UI on /docs. A file of its own rather than an inline script, so the page's
// content-security-policy (envoy/envoy.yaml) can refuse every inline script.

// Operands are checked where every client meets the check, by Envoy, and "Try it out" shows its
// JSON error (docs/api.md). Swagger UI would first test them against the document's pattern and
// show its own message instead; this plugin leaves that to Envoy.
const OperandsCheckedByEnvoy = () => ({
  statePlugins: {
    spec: {
      wrapActions: {
        validateParams: () => () => ({ type: "gcd/operands-checked-by-envoy" }),
      },
    },
  },
});

window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  plugins: [OperandsCheckedByEnvoy],
  // Only Swagger UI's standalone layout (not loaded here) draws the validator badge, which asks
  // validator.swagger.io about the document's URL; off, should the layout ever change.
  validatorUrl: null,
});
