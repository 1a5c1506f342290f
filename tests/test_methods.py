"""Named methods `loss[field=value,...]` (eksft/methods.py): parsing, labels, folder names, plain titles, and
refusal of bad overrides before anything trains. CPU, no model, seconds."""

import pytest

from eksft.methods import Method, parse_methods, split_methods


def test_split_keeps_brackets_whole():
    assert split_methods("sft, eksft[lambda_entropy=0,lambda_kl=0],eksft[variant=official]") == [
        "sft",
        "eksft[lambda_entropy=0,lambda_kl=0]",
        "eksft[variant=official]",
    ]


def test_parse_labels_slugs_titles_and_values():
    sft, paper, official, nats, masking = parse_methods(
        "sft,eksft,eksft[variant=official],eksft[entropy_unit=nats],eksft[lambda_entropy=0, lambda_kl=0]"
    )
    assert (sft.label, sft.slug, sft.fields) == ("sft", "sft", {"loss_type": "sft"})
    assert paper.title == "EKSFT (paper equations, published λ)"
    assert official.label == "eksft[variant=official]" and official.slug == "eksft__variant-official"
    assert official.title == "EKSFT (authors' code)" and nats.title == "EKSFT (per-nat entropy)"
    assert masking.fields == {"loss_type": "eksft", "lambda_entropy": 0, "lambda_kl": 0}
    assert masking.label == "eksft[lambda_entropy=0,lambda_kl=0]" and "masking only" in masking.title
    assert parse_methods(["eksft[rho=0.3,selection=intersection]"])[0].fields["rho"] == 0.3


def test_eaft_methods():
    eaft, half, full = parse_methods("eaft,eaft[eaft_alpha=0.5],eaft[eaft_entropy=full,eaft_topk=5]")
    assert (eaft.label, eaft.slug, eaft.fields) == ("eaft", "eaft", {"loss_type": "eaft"})
    assert half.fields == {"loss_type": "eaft", "eaft_alpha": 0.5} and half.slug == "eaft__eaft_alpha-0.5"
    assert full.slug == "eaft__eaft_entropy-full__eaft_topk-5"
    assert eaft.title.startswith("EAFT") and half.title.endswith("with eaft_alpha=0.5")


@pytest.mark.parametrize(
    "text,needle",
    [
        ("eksfft", "did you mean 'eksft'"),
        ("eksft[lamda_kl=0]", "'lamda_kl' is not a field of EKSFTConfig (did you mean 'lambda_kl'?)"),
        ("eksft[rho=2]", "rho"),
        ("eksft[variant=official,entropy_unit=nats]", "entropy_unit"),
        ("eksft[output_dir=x]", "set by the runner"),
        ("eksft[rho]", "field=value"),
        ("sft,sft", "given twice"),
        ("eksft[rho=0.1,rho=0.2]", "given twice"),
        ("eaft[eaft_entropy=renyi]", "EKSFTConfig.eaft_entropy"),
        ("eaft[eaft_topk=1]", "EKSFTConfig.eaft_topk"),
        ("eaft[eaft_alpha=-1]", "EKSFTConfig.eaft_alpha"),
    ],
)
def test_bad_methods_are_refused_naming_the_field(text, needle):
    with pytest.raises(ValueError, match=None) as err:
        parse_methods(text)
    assert needle in str(err.value)


def test_method_is_hashable_and_canonical():
    assert Method("eksft", (("variant", "official"),)).label == "eksft[variant=official]"
    assert len({Method("sft"), Method("sft")}) == 1
