// Submits the response_mode=form_post form without inline script (the CSP forbids it).
document.addEventListener("DOMContentLoaded", function () {
  var form = document.querySelector("form[data-autosubmit]");
  if (form) { form.submit(); }
});
