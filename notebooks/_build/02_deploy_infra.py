"""Notebook 02: lint the SAM template, show what it creates, deploy it, read the Outputs."""

from common import build, code, md

build(
    "02_deploy_infra",
    "Deploy the infrastructure",
    overview="""
One SAM template (`infra/template.yaml`) describes everything: the bucket, the encrypted
Kinesis stream, the producer and transform Lambdas, two Firehose delivery streams (raw and
cleaned), the Glue database and tables, and an Athena workgroup. This notebook lints it,
lists its resources, draws the data flow **derived from the template itself**, deploys it to
the chosen target and shows the stack Outputs, the contract every later notebook reads.
""",
    needs="""
- `target = "local"` (default): nothing; the embedded emulator is started if it is not running.
- `target = "aws"`: AWS credentials, the SAM CLI (`sam build && sam deploy`) and Python 3.13
  on the `PATH` (the functions' runtime, which `sam build` builds with). The stack
  is `brewops-dev`; set `BREWOPS_STACK_NAME=brewops-prod` before starting Jupyter (or
  `brewops run`) for the `prod` environment of `samconfig.toml`, or a name of your own
  (`brewops-alice`) for a stack of your own with the `default` environment's Stage, under an
  S3 prefix of its own. Every notebook and command reads the same variable, so they all use
  the stack deployed here. Set `BREWOPS_ALARM_EMAIL=you@example.com` the same way to have
  the alarms mailed to you.
""",
    costs="""
Local: none. AWS: one provisioned Kinesis shard (~$0.015/hour) plus per-use Firehose,
Lambda, S3 and Athena charges; set `cleanup = True` or run `sam delete` when done.
""",
    parameters="""
target = "local"  # "local" (embedded emulator) or "aws"
deploy = True  # deploy (or confirm) the stack
template_parameters = ""  # pairs as sam deploy --parameter-overrides takes them (section 4)
cleanup = False  # delete the stack at the end of this notebook
""",
    cells=[
        code("""
import matplotlib.pyplot as plt
import pandas as pd

from brewops import infra, summary
from brewops import target as targets
from brewops.parameters import checked_flags

checked_flags(deploy=deploy, cleanup=cleanup)  # before anything is deployed or deleted
# a run that only deletes the stack reads nothing of it: it may have nothing to read
reads_stack = infra.reads_stack(deploy, cleanup)
template = infra.load_template()
pd.set_option("display.max_colwidth", None)  # S3 URIs and ARNs in full, not cut at 50
"""),
        md(
            "## 1. Lint the template\n\ncfn-lint checks the template offline; an empty table "
            "means clean. Its findings on the functions' runtime come with the date, as AWS "
            "retires a runtime: they stop a deploy to AWS, not the local target, whose "
            "handlers run in this Python."
        ),
        code("""
findings = infra.lint()
display(findings)
errors = infra.lint_errors(findings, target)
# they stop a deploy: a run that only reads or deletes the stack goes on
assert errors.empty or not deploy, "cfn-lint found errors: " + "; ".join(errors["message"])
"""),
        md("## 2. What the template creates"),
        code("""
resources = infra.resources_table(template)
display(resources.groupby("group").size().rename("resources").to_frame().T)
resources[["logical id", "type", "name"]]
"""),
        md(
            "## 3. The data flow\n\nEach arrow is a reference inside the template "
            "(a `!Ref`, `!GetAtt` or `!Sub`), oriented the way the data moves."
        ),
        code("""
infra.plot_data_flow(template)
plt.show()
"""),
        md(
            "## 4. Deploy\n\nLocally, `brewops local up` (nothing to do when it is already "
            "running); on AWS, `sam build` then `sam deploy` with the `samconfig.toml` "
            "environment of the stack (the `default` one, with an S3 prefix of the stack's "
            "own, for a stack no environment names). `template_parameters` overrides the "
            "template's parameters as `sam deploy --parameter-overrides` does "
            '(`"ShardCount=2 StreamMode=ON_DEMAND"`); a name the '
            "template does not declare, or a value it refuses, stops here before anything "
            "is built. A parameter not given keeps the value the stack was deployed with. "
            "A run with `deploy = False, cleanup = True` only deletes the stack: it skips "
            "what reads it, down to the clean-up, so that a stack with nothing to read (a "
            "first deploy that rolled back, `ROLLBACK_COMPLETE`) is deleted too."
        ),
        code("""
if deploy:
    overrides = infra.parse_parameter_overrides([template_parameters], "template_parameters")
    infra.deploy(target, **overrides)
if reads_stack:
    tgt = targets.use(target)
    print(f"target: {tgt.name}, stack: {tgt.stack_name}")
else:
    print(f"target: {target}: the stack is deleted in the clean-up, and not read")
"""),
        md("## 5. The stack Outputs\n\nNotebooks and tests read resource names from here only."),
        code("""
if reads_stack:
    outputs = pd.Series(tgt.outputs, name="value").rename_axis("output").to_frame()
    display(outputs)
    missing = set(infra.output_names(template)) - set(tgt.outputs)
    assert not missing, f"Outputs missing from the deployed stack: {sorted(missing)}"
figures = summary.record(
    notebook="02_deploy_infra",
    lint_findings=len(findings),
    resources=len(resources),
    outputs=len(tgt.outputs) if reads_stack else None,
)
pd.Series(figures, name="recorded")
"""),
        md("## 6. The delivery streams, as deployed"),
        code("""
if reads_stack:
    display(infra.delivery_streams_table(tgt.session, tgt.outputs))
"""),
        md(
            "## Clean-up\n\nWith `cleanup = True` the stack is deleted (locally, the emulator "
            "and the Punk API server are stopped too). On AWS the bucket stays on purpose "
            "(`DeletionPolicy: RetainExceptOnCreate`: it holds the data and the models; only a "
            "first deploy that rolls back removes it); remove it with "
            "`aws s3 rb s3://BUCKET --force` when you no longer need them."
        ),
        code("""
if cleanup:
    infra.teardown(target)
"""),
    ],
)
