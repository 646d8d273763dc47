//! framelake-sdk's attribute macros, re-exported by `framelake_sdk` (use
//! them from there: the code they write names `::framelake_sdk`).

use proc_macro::TokenStream;
use quote::{quote, quote_spanned};
use syn::{ItemFn, LitStr, parse_macro_input};

/// A span over each call of the function, named after it (or after the
/// string given: `#[span_fn("load level")]`), with the module, file and
/// line of the function. For an `async fn` the span covers each poll of
/// its future (a future may move between threads between polls, and a
/// thread's spans must nest).
#[proc_macro_attribute]
pub fn span_fn(attr: TokenStream, item: TokenStream) -> TokenStream {
    let name = if attr.is_empty() {
        None
    } else {
        Some(parse_macro_input!(attr as LitStr))
    };
    let mut function = parse_macro_input!(item as ItemFn);
    let sig = &function.sig;
    if let Some(constness) = &sig.constness {
        return syn::Error::new(constness.span, "#[span_fn] cannot record in a const fn")
            .into_compile_error()
            .into();
    }
    let ident = &sig.ident;
    let name = name.unwrap_or_else(|| LitStr::new(&ident.to_string(), ident.span()));
    // `line!()` spanned at the function's name: the line of its `fn`.
    let line = quote_spanned!(ident.span()=> line!());
    let descriptor = quote! {
        static __FRAMELAKE_SPAN: ::framelake_sdk::Descriptor = ::framelake_sdk::Descriptor {
            kind: ::framelake_sdk::DescriptorKind::Span,
            level: 0,
            line: #line,
            name: #name,
            target: module_path!(),
            file: file!(),
            unit: "",
        };
    };
    let block = &function.block;
    let body = if sig.asyncness.is_some() {
        quote! {{
            #descriptor
            ::framelake_sdk::Instrumented::new(async move #block, &__FRAMELAKE_SPAN).await
        }}
    } else {
        quote! {{
            #descriptor
            let __framelake_span = ::framelake_sdk::SpanGuard::begin(&__FRAMELAKE_SPAN);
            #block
        }}
    };
    function.block = match syn::parse2(body) {
        Ok(block) => Box::new(block),
        Err(e) => return e.into_compile_error().into(),
    };
    quote!(#function).into()
}
