// The interactive API documentation at /docs: Swagger UI over the service's own /openapi.json.
window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null, // never send the document to swagger.io's validator
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
};
