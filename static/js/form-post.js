// Submits a form marked data-autosubmit without inline script (the CSP forbids it): the
// response_mode=form_post answer, and an authorization or logout POST sent again from our own page.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.querySelector("form[data-autosubmit]");
  if (form) { form.submit(); }
});
