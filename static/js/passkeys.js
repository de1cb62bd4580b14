// Passkeys and security keys (WebAuthn) without inline script: every form marked with
// data-passkey="register" or data-passkey="get" fetches its options from data-options-url (a POST
// carrying the form's CSRF token in X-CSRFToken), asks the browser, writes the JSON answer into
// the form's "credential" field and submits the form; the server verifies everything.
// data-passkey-autofill on a "get" form also starts a conditional request, so passkeys are
// offered in the autofill of the field marked autocomplete="username webauthn".
(function () {
  "use strict";

  function toBuffer(value) {
    var base64 = value.replace(/-/g, "+").replace(/_/g, "/");
    var binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer), binary = "";
    for (var i = 0; i < bytes.length; i++) { binary += String.fromCharCode(bytes[i]); }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withIds(list) {
    return (list || []).map(function (c) {
      return {type: c.type, id: toBuffer(c.id), transports: c.transports};
    });
  }

  function creationOptions(json) {
    json.challenge = toBuffer(json.challenge);
    json.user.id = toBuffer(json.user.id);
    json.excludeCredentials = withIds(json.excludeCredentials);
    return json;
  }

  function requestOptions(json) {
    json.challenge = toBuffer(json.challenge);
    json.allowCredentials = withIds(json.allowCredentials);
    return json;
  }

  function attestationJSON(credential) {
    var r = credential.response;
    return {id: credential.id, rawId: toBase64url(credential.rawId), type: credential.type,
            authenticatorAttachment: credential.authenticatorAttachment || undefined,
            clientExtensionResults: credential.getClientExtensionResults(),
            response: {clientDataJSON: toBase64url(r.clientDataJSON),
                       attestationObject: toBase64url(r.attestationObject),
                       transports: r.getTransports ? r.getTransports() : []}};
  }

  function assertionJSON(credential) {
    var r = credential.response;
    return {id: credential.id, rawId: toBase64url(credential.rawId), type: credential.type,
            authenticatorAttachment: credential.authenticatorAttachment || undefined,
            clientExtensionResults: credential.getClientExtensionResults(),
            response: {clientDataJSON: toBase64url(r.clientDataJSON),
                       authenticatorData: toBase64url(r.authenticatorData),
                       signature: toBase64url(r.signature),
                       userHandle: r.userHandle ? toBase64url(r.userHandle) : null}};
  }

  function fetchOptions(form) {
    var token = form.querySelector("input[name=csrf_token]");
    return fetch(form.dataset.optionsUrl, {
      method: "POST", credentials: "same-origin",
      headers: {"X-CSRFToken": token ? token.value : "", "Accept": "application/json"}
    }).then(function (response) {
      if (!response.ok) { throw new Error("options"); }
      return response.json();
    });
  }

  function showError(form, error) {
    var box = form.querySelector("[data-passkey-error]");
    if (!box || (error && error.name === "AbortError")) { return; }
    box.hidden = false;
    box.textContent = (error && error.name === "NotAllowedError") ? box.dataset.cancelled : box.dataset.failed;
  }

  function submitWith(form, json) {
    form.querySelector("input[name=credential]").value = JSON.stringify(json);
    form.submit();
  }

  function register(form) {
    fetchOptions(form).then(function (json) {
      return navigator.credentials.create({publicKey: creationOptions(json)});
    }).then(function (credential) {
      submitWith(form, attestationJSON(credential));
    }).catch(function (error) { showError(form, error); });
  }

  // One conditional (autofill) request may wait in the background; a click replaces it.
  var pending = null;

  function get(form, conditional) {
    if (pending) { pending.abort(); }
    var controller = new AbortController();
    pending = controller;
    return fetchOptions(form).then(function (json) {
      var request = {publicKey: requestOptions(json), signal: controller.signal};
      if (conditional) { request.mediation = "conditional"; }
      return navigator.credentials.get(request);
    }).then(function (credential) {
      if (pending === controller) { pending = null; }
      submitWith(form, assertionJSON(credential));
    }).catch(function (error) {
      if (pending === controller) { pending = null; }
      if (!conditional) { showError(form, error); }  // autofill fails quietly; the button speaks
    });
  }

  function startAutofill(form) {
    var check = PublicKeyCredential.isConditionalMediationAvailable;
    if (!check) { return; }
    check.call(PublicKeyCredential).then(function (available) {
      if (available) { get(form, true); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.PublicKeyCredential || !navigator.credentials) { return; }
    document.querySelectorAll("form[data-passkey]").forEach(function (form) {
      form.hidden = false;
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        if (form.dataset.passkey === "register") { register(form); } else { get(form, false); }
      });
      if (form.dataset.passkey === "get" && "passkeyAutofill" in form.dataset) { startAutofill(form); }
    });
  });
}());
