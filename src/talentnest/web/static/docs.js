// /docs: Swagger UI over this node's own /openapi.json. Everything it loads comes from the node
// (the page's Content-Security-Policy allows nothing else); the online validator is turned off.
"use strict";
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",  // relative, as the dashboard's links are: it works behind a path prefix too
    dom_id: "#swagger-ui",
    deepLinking: true,
    displayOperationId: true,
    displayRequestDuration: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
