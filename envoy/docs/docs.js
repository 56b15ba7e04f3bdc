// Starts Swagger UI on /docs. A file of its own rather than an inline script, so the page's
// content-security-policy (envoy/envoy.yaml) can refuse every inline script.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  // The default sends the document to validator.swagger.io: nothing leaves the cluster.
  validatorUrl: null,
});
